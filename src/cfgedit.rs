//! `ctl user-config` / `ctl group-config`: per-user and per-group files
//! edited in ocserv's format. Every value is checked by the same parser the
//! server uses, a file is replaced atomically (temporary file, fsync,
//! rename), the previous version is kept in `.backup/` with a timestamp,
//! and a second writer at the same time is refused.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::usercfg::{self, UserConfig};

/// What `set` does to a file: keys replaced with new values (a list key
/// given once or more replaces all its lines), keys removed, or a fresh
/// file.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub set: Vec<(String, Vec<String>)>,
    pub unset: Vec<String>,
    /// Start from an empty file instead of the current one.
    pub replace: bool,
}

/// One directory of files: `config_per_user` or `config_per_group`.
pub struct Store {
    pub dir: PathBuf,
    /// "user" or "group", for messages.
    pub kind: &'static str,
}

/// What a write did.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    /// The previous version, if there was one.
    pub backup: Option<PathBuf>,
}

impl Store {
    fn path(&self, name: &str) -> Result<PathBuf, String> {
        usercfg::file_for(&self.dir, name)
            .filter(|_| name.len() <= 255 && !name.chars().any(char::is_control))
            .ok_or_else(|| format!("{name:?} is not a valid {} name (no slash, no leading dot, no control characters)", self.kind))
    }

    /// The file's text, or `None` if the name has no file.
    pub fn show(&self, name: &str) -> Result<Option<String>, String> {
        let path = self.path(name)?;
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Every name with a file, sorted.
    pub fn list(&self) -> Result<Vec<String>, String> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Applies `changes` to the file of `name` and returns where it and its
    /// backup went; the file is untouched if any value is bad.
    pub fn set(&self, name: &str, changes: &Changes) -> Result<Written, String> {
        let path = self.path(name)?;
        let _lock = self.lock()?;
        let old = self.show(name)?;
        let text = edit(
            if changes.replace {
                ""
            } else {
                old.as_deref().unwrap_or("")
            },
            changes,
        );
        check(&text).map_err(|e| format!("{} {name}: {e}; nothing written", self.kind))?;
        let backup = old.as_deref().map(|o| self.backup(name, o)).transpose()?;
        write_atomically(&path, text.as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Written { path, backup })
    }

    /// Removes the file of `name`, keeping a backup.
    pub fn delete(&self, name: &str) -> Result<Written, String> {
        let path = self.path(name)?;
        let _lock = self.lock()?;
        let old = self
            .show(name)?
            .ok_or_else(|| format!("{} {name} has no file in {}", self.kind, self.dir.display()))?;
        let backup = Some(self.backup(name, &old)?);
        fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        sync_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(Written { path, backup })
    }

    /// `.backup/NAME.20261205T071530.123Z`: sorts by time, never overwritten.
    fn backup(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join(".backup");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stamp = timestamp(SystemTime::now());
        let mut path = dir.join(format!("{name}.{stamp}"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{name}.{stamp}-{n}"));
            n += 1;
        }
        write_atomically(&path, text.as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// An exclusive lock on the directory, refused at once if held.
    fn lock(&self) -> Result<File, String> {
        let path = self.dir.join(".ocserv-uring.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!(
                "another change to {} is in progress (lock {}); try again",
                self.dir.display(),
                path.display()
            ));
        }
        Ok(f)
    }
}

/// The keys `set` may write: those the server reads, as it reads them.
pub fn check(text: &str) -> Result<UserConfig, String> {
    UserConfig::parse(text).map_err(|e| e.to_string())
}

/// Keeps comments and untouched keys in place, drops the lines of every
/// changed key and appends the new values in the order given.
fn edit(old: &str, changes: &Changes) -> String {
    let touched = |key: &str| {
        changes
            .unset
            .iter()
            .chain(changes.set.iter().map(|(k, _)| k))
            .any(|k| k == key)
    };
    let mut out: String = old
        .lines()
        .filter(|l| {
            let key = l.split_once('=').map(|(k, _)| k.trim());
            l.trim_start().starts_with('#') || key.is_none_or(|k| !touched(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for (key, values) in &changes.set {
        for v in values {
            out += &format!("{key} = {v}\n");
        }
    }
    out
}

/// Writes `data` to `path` so readers see the old file or the new one,
/// never a part: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (y, mo, day, h, mi, s) = crate::units::civil(d.as_secs());
    format!(
        "{y:04}{mo:02}{day:02}T{h:02}{mi:02}{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(set: &[(&str, &[&str])], unset: &[&str]) -> Changes {
        Changes {
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            unset: unset.iter().map(|s| (*s).to_owned()).collect(),
            replace: false,
        }
    }

    #[test]
    fn edit_replaces_changed_keys_and_keeps_the_rest() {
        let old = "# alice's file\nroute = 10.0.0.0/8\nroute = 10.1.0.0/16\ndns = 10.0.0.53\nmtu = 1300\n";
        let new = edit(old, &changes(&[("route", &["172.16.0.0/12"])], &["mtu"]));
        assert_eq!(
            new,
            "# alice's file\ndns = 10.0.0.53\nroute = 172.16.0.0/12\n"
        );
        assert!(check(&new).is_ok());
    }

    #[test]
    fn set_writes_backs_up_and_refuses_bad_values() {
        let dir = std::env::temp_dir().join(format!("ocu-cfgedit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let store = Store {
            dir: dir.clone(),
            kind: "user",
        };
        let w = store
            .set("alice", &changes(&[("route", &["10.0.0.0/8"])], &[]))
            .unwrap();
        assert!(w.backup.is_none());
        let w = store
            .set("alice", &changes(&[("dns", &["10.0.0.53"])], &[]))
            .unwrap();
        let backup = w.backup.expect("the first version kept");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "route = 10.0.0.0/8\n");
        assert_eq!(
            store.show("alice").unwrap().unwrap(),
            "route = 10.0.0.0/8\ndns = 10.0.0.53\n"
        );
        let e = store
            .set("alice", &changes(&[("route", &["10.0.0.0/33"])], &[]))
            .unwrap_err();
        assert!(e.contains("route") && e.contains("nothing written"), "{e}");
        assert_eq!(
            store.show("alice").unwrap().unwrap(),
            "route = 10.0.0.0/8\ndns = 10.0.0.53\n"
        );
        assert!(store.set("../etc", &Changes::default()).is_err());
        assert_eq!(store.list().unwrap(), ["alice"]);
        // A second writer is refused while the lock is held.
        let held = store.lock().unwrap();
        assert!(store
            .set("alice", &Changes::default())
            .unwrap_err()
            .contains("in progress"));
        drop(held);
        store.delete("alice").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.join(".backup")).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
