//! `ctl user-config` / `ctl group-config`: per-user and per-group files
//! edited in ocserv's format. Every value is checked by the same parser the
//! server uses, a file is replaced atomically (temporary file, fsync,
//! rename), the previous version is kept in `.backup/` with a timestamp
//! (the newest `keep_backups` of each name), and a second writer at the
//! same time is refused.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    /// Backups kept per name (`[users] keep_backups`); 0 keeps none.
    pub keep_backups: usize,
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
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
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
        let backup = match old.as_deref() {
            Some(o) => self.backup(name, o)?,
            None => None,
        };
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
        let backup = self.backup(name, &old)?;
        fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        sync_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(Written { path, backup })
    }

    /// `.backup/NAME.20261205T071530.123Z`: sorts by time, never
    /// overwritten. Older backups of `name` beyond `keep_backups` go; with
    /// 0, none is written and any left from before go too.
    fn backup(&self, name: &str, text: &str) -> Result<Option<PathBuf>, String> {
        let dir = self.dir.join(".backup");
        if self.keep_backups == 0 {
            if fs::symlink_metadata(&dir).is_ok() {
                backup_dir(&dir)?;
                prune_backups(&dir, name, 0)?;
            }
            return Ok(None);
        }
        backup_dir(&dir)?;
        let stamp = timestamp(SystemTime::now());
        let mut path = dir.join(format!("{name}.{stamp}"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{name}.{stamp}-{n}"));
            n += 1;
        }
        write_atomically(&path, text.as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        prune_backups(&dir, name, self.keep_backups)?;
        Ok(Some(path))
    }

    /// An exclusive lock on the directory, refused at once if held.
    fn lock(&self) -> Result<File, String> {
        let path = self.dir.join(".ocserv-uring.lock");
        match lock_file(&path, Duration::ZERO) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(format!(
                "another change to {} is in progress (lock {}); try again",
                self.dir.display(),
                path.display()
            )),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
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

/// An exclusive `flock` on `path` (created mode 0600 if missing, never
/// through a symlink), held until the file is dropped. Tries for `wait`,
/// or once if it is zero; `None` if another process still holds it.
pub fn lock_file(path: &Path, wait: Duration) -> std::io::Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let until = Instant::now() + wait;
    loop {
        match crate::sys::try_flock_exclusive(&f) {
            Ok(true) => return Ok(Some(f)),
            Ok(false) if Instant::now() >= until => return Ok(None),
            Ok(false) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Makes sure `dir` is a directory of our own for backups: created mode
/// 0700, and never a symlink, which could send the backups (and the
/// pruning) anywhere.
fn backup_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.file_type().is_dir() {
        return Err(format!(
            "{}: not a directory (a symlink?); refusing to keep backups there",
            dir.display()
        ));
    }
    // Earlier versions created it with the umask's mode.
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// When a backup of `name` was made, if `file` is one: (timestamp, n) of
/// `NAME.STAMP` or `NAME.STAMP-n`, so backups sort oldest first.
fn backup_time(file: &str, name: &str) -> Option<(String, u64)> {
    let rest = file.strip_prefix(name)?.strip_prefix('.')?;
    let (stamp, n) = match rest.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    // 20261205T071530.123Z
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 20
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z';
    ok.then(|| (stamp.to_owned(), n))
}

/// Removes all but the newest `keep` backups of `name` in `dir`.
fn prune_backups(dir: &Path, name: &str, keep: usize) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut backups: Vec<((String, u64), PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((backup_time(e.file_name().to_str()?, name)?, e.path())))
        .collect();
    backups.sort();
    let old = backups.len().saturating_sub(keep);
    for (_, path) in &backups[..old] {
        fs::remove_file(path)
            .map_err(|e| format!("removing the old backup {}: {e}", path.display()))?;
    }
    Ok(())
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
    let (tmp, f) = create_temporary(dir, name, mode)?;
    if let Err(e) = fill_and_rename(f, data, &tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// A new file `.NAME.RANDOM.tmp` in `dir`. Its name cannot be guessed, and
/// it is created only if nothing is there, never through a symlink: a
/// user who can write `dir` cannot make us write elsewhere.
fn create_temporary(dir: &Path, name: &str, mode: u32) -> std::io::Result<(PathBuf, File)> {
    let mut tries = 0;
    loop {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| std::io::Error::other("no random bytes"))?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp);
        match opened {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn fill_and_rename(mut f: File, data: &[u8], tmp: &Path, path: &Path) -> std::io::Result<()> {
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
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
    use std::os::unix::fs::PermissionsExt;

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
            keep_backups: 20,
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
        let mode = fs::metadata(dir.join(".backup"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        // Nothing but the files and the lock: no temporary file left.
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".backup", ".ocserv-uring.lock"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocu-cfgedit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_symlink_as_the_backup_dir_is_refused() {
        let dir = temp_dir("symlink");
        let elsewhere = dir.join("elsewhere");
        let files = dir.join("users");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::create_dir_all(&files).unwrap();
        std::os::unix::fs::symlink(&elsewhere, files.join(".backup")).unwrap();
        let store = Store {
            dir: files.clone(),
            kind: "user",
            keep_backups: 20,
        };
        store
            .set("alice", &changes(&[("mtu", &["1300"])], &[]))
            .unwrap();
        // The first version needs no backup; the second would go there.
        let e = store
            .set("alice", &changes(&[("mtu", &["1200"])], &[]))
            .unwrap_err();
        assert!(e.contains("refusing"), "{e}");
        assert_eq!(store.show("alice").unwrap().unwrap(), "mtu = 1300\n");
        assert!(names_in(&elsewhere).is_empty());
        // Pruning with keep_backups = 0 does not follow it either.
        fs::write(elsewhere.join("alice.20200101T000000.000Z"), "mtu = 1\n").unwrap();
        let none = Store {
            dir: files.clone(),
            kind: "user",
            keep_backups: 0,
        };
        assert!(none.delete("alice").unwrap_err().contains("refusing"));
        assert_eq!(names_in(&elsewhere), ["alice.20200101T000000.000Z"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backups_are_pruned_to_keep_backups_oldest_first() {
        let dir = temp_dir("prune");
        let store = Store {
            dir: dir.clone(),
            kind: "user",
            keep_backups: 3,
        };
        for mtu in 1300..1306 {
            store
                .set("alice", &changes(&[("mtu", &[&mtu.to_string()])], &[]))
                .unwrap();
        }
        // Six versions, five backups made, the newest three kept.
        let backups = dir.join(".backup");
        let mut kept: Vec<String> = names_in(&backups)
            .iter()
            .map(|n| fs::read_to_string(backups.join(n)).unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["mtu = 1302\n", "mtu = 1303\n", "mtu = 1304\n"]);

        // Order by time, and within one millisecond by counter (10 after 2);
        // other names and other files stay.
        for n in names_in(&backups) {
            fs::remove_file(backups.join(n)).unwrap();
        }
        for n in [
            "alice.20200101T000000.000Z",
            "alice.20200101T000000.000Z-2",
            "alice.20200101T000000.000Z-10",
            "alice.20200101T000000.001Z",
            "alice.smith.20200101T000000.000Z",
            "alice.notes",
        ] {
            fs::write(backups.join(n), "").unwrap();
        }
        let w = store
            .set("alice", &changes(&[("mtu", &["1400"])], &[]))
            .unwrap();
        let newest = w
            .backup
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let mut want = vec![
            "alice.20200101T000000.000Z-10".to_owned(),
            "alice.20200101T000000.001Z".to_owned(),
            "alice.notes".to_owned(),
            "alice.smith.20200101T000000.000Z".to_owned(),
            newest,
        ];
        want.sort();
        assert_eq!(names_in(&backups), want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keep_backups_zero_keeps_none() {
        let dir = temp_dir("none");
        let keeping = Store {
            dir: dir.clone(),
            kind: "user",
            keep_backups: 20,
        };
        keeping
            .set("alice", &changes(&[("mtu", &["1300"])], &[]))
            .unwrap();
        keeping
            .set("alice", &changes(&[("mtu", &["1301"])], &[]))
            .unwrap();
        keeping
            .set("bob", &changes(&[("mtu", &["1300"])], &[]))
            .unwrap();
        keeping
            .set("bob", &changes(&[("mtu", &["1301"])], &[]))
            .unwrap();
        assert_eq!(names_in(&dir.join(".backup")).len(), 2);
        let none = Store {
            dir: dir.clone(),
            kind: "user",
            keep_backups: 0,
        };
        let w = none
            .set("alice", &changes(&[("mtu", &["1302"])], &[]))
            .unwrap();
        assert!(w.backup.is_none());
        assert_eq!(none.show("alice").unwrap().unwrap(), "mtu = 1302\n");
        // alice's earlier backup went too; bob's stays until bob changes.
        let left = names_in(&dir.join(".backup"));
        assert!(left.len() == 1 && left[0].starts_with("bob."), "{left:?}");
        assert!(none.delete("bob").unwrap().backup.is_none());
        assert!(names_in(&dir.join(".backup")).is_empty());
        // A directory never made stays unmade.
        let fresh = temp_dir("none-fresh");
        let none = Store {
            dir: fresh.clone(),
            kind: "user",
            keep_backups: 0,
        };
        none.set("alice", &changes(&[("mtu", &["1300"])], &[]))
            .unwrap();
        none.set("alice", &changes(&[("mtu", &["1301"])], &[]))
            .unwrap();
        assert!(!fresh.join(".backup").exists());
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&fresh).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = temp_dir("tmp");
        // A directory in the way: the rename fails.
        fs::create_dir_all(dir.join("alice").join("sub")).unwrap();
        assert!(write_atomically(&dir.join("alice"), b"mtu = 1300\n", 0o644).is_err());
        assert_eq!(names_in(&dir), ["alice"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
