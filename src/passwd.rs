//! ocpasswd files: `user:group1,group2:hash`, hashes `$5$`, `$6$`, `$1$`;
//! `!` before the hash locks the account (docs/protocol.md, "Password files").

use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    /// Empty when the file says `*` (no group).
    pub groups: Vec<String>,
    pub hash: String,
}

impl Entry {
    pub fn locked(&self) -> bool {
        self.hash.starts_with('!')
    }

    /// Constant work whatever the outcome; a locked or empty hash never matches.
    pub fn verify(&self, password: &str) -> bool {
        if self.locked() || self.hash.is_empty() {
            return false;
        }
        pwhash::unix::verify(password, &self.hash)
    }

    fn to_line(&self) -> String {
        let groups = if self.groups.is_empty() {
            "*".to_string()
        } else {
            self.groups.join(",")
        };
        format!("{}:{}:{}", self.user, groups, self.hash)
    }
}

/// Parses one line; `None` for lines ocserv ignores (short, comment, malformed).
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.len() <= 4 || line.starts_with('#') {
        return None;
    }
    let (user, rest) = line.split_once(':')?;
    let (groups, hash) = rest.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    let groups = groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "*")
        .map(str::to_owned)
        .collect();
    Some(Entry {
        user: user.to_owned(),
        groups,
        hash: hash.to_owned(),
    })
}

pub fn find_user(contents: &str, user: &str) -> Option<Entry> {
    contents
        .lines()
        .filter_map(parse_line)
        .find(|e| e.user == user)
}

/// A burned hash for unknown users, so they cost as much as known ones.
const DUMMY_HASH: &str = "$5$zQVE8aHzJ4qFbC1A$Xyq8Wn0pQm3BRR5m1zZ5l2cI8Wq1b7fN9eYtOHkJ2d.";

/// Reads the file and checks `user`/`password`. Blocking: run it off the
/// executor. A missing file is an empty one (the dev config starts with none).
/// The user's groups if `password` is right (empty: no group), `None`
/// if it is wrong or there is no such user.
pub fn check(path: &Path, user: &str, password: &str) -> std::io::Result<Option<Vec<String>>> {
    let contents = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(match find_user(&contents, user) {
        Some(e) => e.verify(password).then_some(e.groups),
        None => {
            let _ = pwhash::unix::verify(password, DUMMY_HASH);
            None
        }
    })
}

/// Every group named in the password file, in first-seen order (for
/// `auto_select_group`). A missing file has none.
pub fn all_groups(path: &Path) -> std::io::Result<Vec<String>> {
    let contents = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut groups: Vec<String> = Vec::new();
    for e in contents.lines().filter_map(parse_line) {
        for g in e.groups {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(groups)
}

const SALT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-256-crypt with a 16-character salt, what ocpasswd writes.
// pwhash deprecates `$5$` for new passwords; ocpasswd compatibility wants it.
#[allow(deprecated)]
pub fn hash_password(password: &str, random: [u8; 16]) -> String {
    let salt: String = random
        .iter()
        .map(|b| SALT_ALPHABET[usize::from(b & 63)] as char)
        .collect();
    pwhash::sha256_crypt::hash_with(format!("$5${salt}").as_str(), password)
        .expect("a $5$ setup with a valid salt always hashes")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set the password (and groups if given), adding the user if needed.
    SetPassword {
        hash: String,
        groups: Option<Vec<String>>,
    },
    Lock,
    Unlock,
    Delete,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("user name {0:?} must be non-empty and contain no ':' or newline")]
    BadUser(String),
    #[error("group name {0:?} must contain no ':', ',' or newline")]
    BadGroup(String),
    #[error("no user {0:?} in the file")]
    NoSuchUser(String),
}

/// Applies `change` to `user` in the file's contents; other lines stay as they were.
pub fn apply(contents: &str, user: &str, change: &Change) -> Result<String, ChangeError> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err(ChangeError::BadUser(user.to_owned()));
    }
    if let Change::SetPassword {
        groups: Some(gs), ..
    } = change
    {
        if let Some(g) = gs
            .iter()
            .find(|g| g.is_empty() || g.contains([':', ',', '\n', '\r']))
        {
            return Err(ChangeError::BadGroup(g.clone()));
        }
    }
    let mut out = String::with_capacity(contents.len() + 128);
    let mut found = false;
    for line in contents.lines() {
        let Some(mut e) = parse_line(line).filter(|e| e.user == user) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        found = true;
        match change {
            Change::SetPassword { hash, groups } => {
                e.hash = hash.clone();
                if let Some(g) = groups {
                    e.groups = g.clone();
                }
            }
            Change::Lock if !e.locked() => e.hash.insert(0, '!'),
            Change::Lock => {}
            Change::Unlock => e.hash = e.hash.trim_start_matches('!').to_owned(),
            Change::Delete => continue,
        }
        out.push_str(&e.to_line());
        out.push('\n');
    }
    if !found {
        match change {
            Change::SetPassword { hash, groups } => {
                let e = Entry {
                    user: user.to_owned(),
                    groups: groups.clone().unwrap_or_default(),
                    hash: hash.clone(),
                };
                out.push_str(&e.to_line());
                out.push('\n');
            }
            _ => return Err(ChangeError::NoSuchUser(user.to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl passwd -5 -salt ...`, `-6`, `-1` for the password "test123".
    const SHA256: &str = "$5$i6SNmLDCgBNjyJ7q$QMp95ur1NHZo3HNWEqAVwQyE.5ckpmwNSHdnOQ9Px11";
    const SHA512: &str = "$6$saltsalt$U5d2t4MFT.Hn/auqLjcfU6R/lm2Y71FvBwABEOht/UpRtNzcFvzGl/oU6V38pYgY8ZpicOa.0ESff5jRNylZM.";
    const MD5: &str = "$1$saltsalt$uODog0jKoMVYs4vDW7pRr.";

    #[test]
    fn verifies_all_ocpasswd_hash_kinds() {
        for h in [SHA256, SHA512, MD5] {
            let e = parse_line(&format!("alice:g1:{h}")).unwrap();
            assert!(e.verify("test123"), "{h}");
            assert!(!e.verify("test124"), "{h}");
        }
    }

    #[test]
    fn parses_groups_and_locks() {
        let e = parse_line("test:tost, group1 ,group2:!$5$x$y").unwrap();
        assert_eq!(e.groups, ["tost", "group1", "group2"]);
        assert!(e.locked());
        assert!(!e.verify("anything"));
        assert_eq!(
            parse_line("bob:*:$1$a$b").unwrap().groups,
            Vec::<String>::new()
        );
        assert_eq!(parse_line("abc"), None);
        assert_eq!(parse_line("no-colons-here"), None);
        assert_eq!(parse_line(":g:hash"), None);
    }

    #[test]
    fn generated_hash_is_ocpasswd_shaped_and_verifies() {
        let h = hash_password("s3cret", [7; 16]);
        assert!(h.starts_with("$5$"), "{h}");
        let parts: Vec<_> = h.split('$').collect();
        assert_eq!((parts[2].len(), parts[3].len()), (16, 43), "{h}");
        assert!(parse_line(&format!("u:*:{h}")).unwrap().verify("s3cret"));
    }

    #[test]
    fn apply_adds_changes_locks_and_deletes() {
        let f = "keep:*:$1$a$b\n";
        let f = apply(
            f,
            "alice",
            &Change::SetPassword {
                hash: "H1".into(),
                groups: None,
            },
        )
        .unwrap();
        assert_eq!(f, "keep:*:$1$a$b\nalice:*:H1\n");
        let groups = Some(vec!["g1".into(), "g2".into()]);
        let f = apply(
            &f,
            "alice",
            &Change::SetPassword {
                hash: "H2".into(),
                groups,
            },
        )
        .unwrap();
        assert_eq!(f, "keep:*:$1$a$b\nalice:g1,g2:H2\n");
        let f = apply(&f, "alice", &Change::Lock).unwrap();
        assert!(f.contains("alice:g1,g2:!H2\n"));
        let f = apply(&f, "alice", &Change::Unlock).unwrap();
        assert!(f.contains("alice:g1,g2:H2\n"));
        let f = apply(&f, "alice", &Change::Delete).unwrap();
        assert_eq!(f, "keep:*:$1$a$b\n");
        assert_eq!(
            apply(&f, "ghost", &Change::Lock),
            Err(ChangeError::NoSuchUser("ghost".into()))
        );
        assert!(apply(&f, "a:b", &Change::Lock).is_err());
    }

    #[test]
    fn check_reads_the_file_and_treats_missing_as_empty() {
        let dir = std::env::temp_dir().join(format!("ocu-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ocpasswd");
        assert_eq!(check(&p, "alice", "test123").unwrap(), None);
        std::fs::write(&p, format!("alice:*:{SHA256}\nbob:staff,dev:{SHA256}\n")).unwrap();
        assert_eq!(check(&p, "alice", "test123").unwrap(), Some(vec![]));
        assert_eq!(
            check(&p, "bob", "test123").unwrap(),
            Some(vec!["staff".to_string(), "dev".to_string()])
        );
        assert_eq!(check(&p, "alice", "nope").unwrap(), None);
        assert_eq!(check(&p, "carol", "test123").unwrap(), None);
        std::fs::write(
            &p,
            format!("alice:*:{SHA256}\nbob:staff,dev:{SHA256}\ncarol:dev,ops:{SHA256}\n"),
        )
        .unwrap();
        assert_eq!(all_groups(&p).unwrap(), ["staff", "dev", "ops"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
