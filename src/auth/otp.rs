//! The oath users file of `[auth] otp_file` (ocserv's `plain[otp=FILE]`):
//! a code checked and the file updated under the same lock pam_oath and
//! liboath take, so a code is taken once whoever reads the file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::proto::oath::{self, Refused};

/// Why a code did not log the user in.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("no one-time password token for this user")]
    NoToken,
    #[error("{file}: {why}")]
    File { file: PathBuf, why: String },
}

/// `YYYY-MM-DDTHH:MM:SSL`, liboath's local time stamp.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.strip_suffix('L')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let (&[y, mo, day], &[h, mi, sec]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    crate::sys::from_local_time((
        y.parse().ok()?,
        mo.parse().ok()?,
        day.parse().ok()?,
        h.parse().ok()?,
        mi.parse().ok()?,
        sec.parse().ok()?,
    ))
}

fn format_time(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::sys::local_time(unix).unwrap_or((1970, 1, 1, 0, 0, 0));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}L")
}

/// Checks `otp` for `user` at Unix time `now`; on success the user's line
/// records it (so it is never taken again).
pub fn check(path: &Path, user: &str, otp: &str, now: i64) -> Result<(), OtpError> {
    // fcntl locks are the process's: threads of this one queue here.
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let file_err = |file: &Path, why: String| OtpError::File {
        file: file.to_owned(),
        why,
    };
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let lock_path = with(".lock");
    let lock = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| file_err(&lock_path, e.to_string()))?;
    crate::sys::lock_posix(&lock).map_err(|e| file_err(&lock_path, e.to_string()))?;
    // Removed however this ends, while still held (as liboath does).
    struct Unlink<'a>(&'a Path);
    impl Drop for Unlink<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_file(self.0);
        }
    }
    let _unlink = Unlink(&lock_path);
    let text = fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let token =
            oath::parse_line(line, i + 1, parse_time).map_err(|e| file_err(path, e.to_string()))?;
        if let Some(t) = token.filter(|t| t.user == user) {
            found = Some((i, t));
            break;
        }
    }
    let (index, mut token) = found.ok_or(OtpError::NoToken)?;
    oath::verify(&mut token, otp, now)?;
    let hex_key = text
        .lines()
        .nth(index)
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default();
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.lines().enumerate() {
        if i == index {
            out.push_str(&oath::format_line(&token, hex_key, &format_time(now)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let new_path = with(".new");
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&new_path)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        fs::rename(&new_path, path)
    })();
    written.map_err(|e| file_err(path, format!("recording the code: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_taken_once_and_the_file_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("ocu-otp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.oath");
        fs::write(
            &file,
            "# tokens\nHOTP carol - 3132333435363738393031323334353637383930\nHOTP/T30 alice - 3132333435363738393031323334353637383930\n",
        )
        .unwrap();
        let now = 1_111_111_109;
        let code = oath::hotp(b"12345678901234567890", (now / 30) as u64, 6);
        check(&file, "alice", &code, now).unwrap();
        assert!(matches!(
            check(&file, "alice", &code, now + 1),
            Err(OtpError::Refused(Refused::Replayed))
        ));
        assert!(matches!(
            check(&file, "nobody", &code, now),
            Err(OtpError::NoToken)
        ));
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# tokens\nHOTP carol - "), "{text}");
        assert!(
            text.contains(&format!(
                "HOTP/T30\talice\t-\t3132333435363738393031323334353637383930\t0\t{code}\t"
            )),
            "{text}"
        );
        assert_eq!(parse_time(&format_time(now)), Some(now));
        assert!(!dir.join("users.oath.lock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
