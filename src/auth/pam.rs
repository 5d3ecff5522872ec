//! PAM logins (`[auth] method = "pam"`, ocserv's `auth = pam`): the
//! service's conversation becomes the login's forms. The password of the
//! password form answers the first hidden prompt; every other prompt is a
//! further form, with the modules' info and error messages above it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::conversation::Conversation;
use super::Verdict;
use crate::proto::auth::{Accepted, Prompt};
use crate::sys::pam::{self, Said};

/// `[pam]` as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawPam {
    /// The PAM service: /etc/pam.d/SERVICE.
    pub service: String,
    /// Where the service file is instead of /etc/pam.d (Linux-PAM 1.4's
    /// pam_start_confdir); empty: /etc/pam.d.
    pub config_dir: Option<PathBuf>,
    /// Groups with a smaller id are not the user's groups here (ocserv's
    /// `pam[gid-min=...]`).
    pub gid_min: u32,
}

impl Default for RawPam {
    fn default() -> Self {
        Self {
            service: "ocserv-uring".into(),
            config_dir: None,
            gid_min: 0,
        }
    }
}

impl RawPam {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One login through `cfg`'s service.
pub fn login(
    cfg: &RawPam,
    conv: &Conversation,
    user: &str,
    password: String,
    rhost: &str,
) -> Verdict {
    let mut password = Some(password);
    // Info and error lines waiting to be shown with the next prompt.
    let mut notes: Vec<String> = Vec::new();
    let mut asked = 0u32;
    let result = {
        let mut answer = |said: Said<'_>| match said {
            Said::Info(t) | Said::Error(t) => {
                notes.push(t.trim().to_owned());
                Some(String::new())
            }
            Said::Prompt { echo: false, .. } if password.is_some() => password.take(),
            Said::Prompt { text, echo } => {
                notes.push(text.trim().to_owned());
                let message = notes
                    .drain(..)
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                asked += 1;
                conv.ask(Prompt { message, echo })
            }
        };
        pam::login(
            &cfg.service,
            cfg.config_dir.as_deref(),
            user,
            rhost,
            &mut answer,
        )
    };
    match result {
        Ok(()) => match crate::sys::creds::user_groups(user, cfg.gid_min) {
            Ok(groups) => Verdict::Accept(Accepted {
                groups: groups.unwrap_or_default(),
                ..Default::default()
            }),
            Err(e) => Verdict::Error(format!("the user's groups: {e}")),
        },
        Err(f) => {
            let said = (!notes.is_empty()).then(|| notes.join("\n"));
            match f.code {
                pam::PAM_AUTH_ERR
                | pam::PAM_USER_UNKNOWN
                | pam::PAM_MAXTRIES
                | pam::PAM_PERM_DENIED => Verdict::Reject(said),
                pam::PAM_ACCT_EXPIRED => Verdict::Reject(Some(
                    said.unwrap_or_else(|| "Your account has expired.".into()),
                )),
                _ if f.step == "pam_chauthtok" => Verdict::Reject(said.or(Some(f.text))),
                _ if asked > 0 && !conv.wanted() => {
                    Verdict::Error("the user did not answer in time".into())
                }
                // A setup that cannot decide (no such service, a module
                // that cannot reach its data): the operator's to fix.
                _ => Verdict::Error(format!("service {}: {f}", cfg.service)),
            }
        }
    }
}
