//! The master key's files: `master.key` (the key in use), `master.key.next` (the key a
//! rotation is moving to) and `master.key.old` (the key a finished rotation moved from).
//!
//! A key file holds the 32 key bytes, raw or as 64 hex digits (one optional newline). It is
//! written with mode 0600 in a directory created 0700, fsynced with its directory before
//! anything is sealed under it, and never replaced in place: a rotation writes `.next`
//! first and renames it over `master.key` only when every secret is sealed under it.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::sealed::{Keyring, MasterKey, MASTER_KEY_LEN};

/// Where a process's master key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    path: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Key(format!("{what} {}: {e}", path.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Read one key file; `None` if it does not exist.
fn read_key(path: &Path) -> Result<Option<MasterKey>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read the key file", path, e)),
    };
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the master key file has mode {mode:o}: others can read it; run `chmod 600` on it"
            );
        }
    }
    let raw = if bytes.len() == MASTER_KEY_LEN {
        bytes
    } else {
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        let text = text.strip_suffix('\n').unwrap_or(text);
        decode_hex(text).ok_or_else(|| {
            StoreError::Key(format!(
                "{} is not a master key: expected {MASTER_KEY_LEN} bytes, or {} hex digits, \
                 got {} bytes",
                path.display(),
                2 * MASTER_KEY_LEN,
                bytes.len()
            ))
        })?
    };
    MasterKey::from_bytes(&raw)
        .map(Some)
        .map_err(|e| StoreError::Key(format!("{}: {e}", path.display())))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 2 * MASTER_KEY_LEN || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// fsync a directory, so a file created or renamed in it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync the directory", dir, e))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Create `dir` (and its parents) with mode 0700 where missing.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("cannot create the directory", dir, e))
}

/// Write a new key file (mode 0600, must not exist yet) and fsync it and its directory.
fn write_new(path: &Path, key: &MasterKey) -> Result<()> {
    let dir = parent(path);
    create_private_dir(dir)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("cannot create the key file", path, e))?;
    f.write_all(key.raw())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("cannot write the key file", path, e))?;
    sync_dir(dir)
}

impl KeyFiles {
    /// `path` is `master.key`; `.next` and `.old` sit beside it.
    pub fn new(path: impl Into<PathBuf>) -> KeyFiles {
        KeyFiles { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn next_path(&self) -> PathBuf {
        with_suffix(&self.path, ".next")
    }

    pub fn old_path(&self) -> PathBuf {
        with_suffix(&self.path, ".old")
    }

    /// The keys on disk: `master.key` seals, `.next` and `.old` (when present) also open.
    /// `None` when `master.key` does not exist.
    pub fn load(&self) -> Result<Option<Keyring>> {
        let Some(primary) = read_key(&self.path)? else {
            return Ok(None);
        };
        let mut others = Vec::new();
        for p in [self.next_path(), self.old_path()] {
            if let Some(k) = read_key(&p)? {
                others.push(k);
            }
        }
        Ok(Some(Keyring::new(primary, others)))
    }

    /// The key a rotation is moving to, if one was started.
    pub fn load_next(&self) -> Result<Option<MasterKey>> {
        read_key(&self.next_path())
    }

    /// Create `master.key` with a fresh key (it must not exist).
    pub fn create(&self) -> Result<Keyring> {
        let key = MasterKey::generate()?;
        match write_new(&self.path, &key) {
            Ok(()) => Ok(Keyring::new(key, Vec::new())),
            // Another process sharing this file created it first: use theirs.
            Err(_) if self.path.exists() => self.load()?.ok_or_else(|| {
                StoreError::Key(format!("{} vanished while starting", self.path.display()))
            }),
            Err(e) => Err(e),
        }
    }

    /// Create `master.key.next` with a fresh key (it must not exist).
    pub fn create_next(&self) -> Result<MasterKey> {
        let key = MasterKey::generate()?;
        write_new(&self.next_path(), &key)?;
        Ok(key)
    }

    /// Finish a rotation on disk: the current key is kept as `master.key.old` (replacing an
    /// older one), then `master.key.next` is renamed over `master.key` in one step. At every
    /// moment `master.key` holds the old or the new key, and the other one sits beside it.
    pub fn promote_next(&self) -> Result<()> {
        let dir = parent(&self.path);
        let current =
            fs::read(&self.path).map_err(|e| io_err("cannot read the key file", &self.path, e))?;
        let old = self.old_path();
        let tmp = with_suffix(&self.path, ".old.tmp");
        let _ = fs::remove_file(&tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err("cannot create", &tmp, e))?;
            f.write_all(&current)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err("cannot write", &tmp, e))?;
        }
        fs::rename(&tmp, &old).map_err(|e| io_err("cannot rename to", &old, e))?;
        sync_dir(dir)?;
        fs::rename(self.next_path(), &self.path)
            .map_err(|e| io_err("cannot rename the next key over", &self.path, e))?;
        sync_dir(dir)
    }
}

/// Set `path`'s mode to 0600 if it exists (database files made by an older kami).
pub fn restrict_file(path: &Path) -> Result<()> {
    match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot restrict the permissions of", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_in_a_0700_dir_and_loads_raw_or_hex() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(tmp.path().join("data/master.key"));
        assert!(files.load().unwrap().is_none());
        let ring = files.create().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(files.path()), 0o600);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);
        let again = files.load().unwrap().unwrap();
        assert_eq!(again.primary().id(), ring.primary().id());
        // The same key written as hex text opens the same values.
        let hex: String = ring
            .primary()
            .raw()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hex_file = tmp.path().join("hex.key");
        fs::write(&hex_file, format!("{hex}\n")).unwrap();
        let from_hex = KeyFiles::new(&hex_file).load().unwrap().unwrap();
        assert_eq!(from_hex.primary().id(), ring.primary().id());
        fs::write(&hex_file, "too short").unwrap();
        let err = KeyFiles::new(&hex_file).load().unwrap_err().to_string();
        assert!(err.contains("is not a master key"), "{err}");
        assert!(!err.contains("too short"), "{err}");
    }

    #[test]
    fn promoting_the_next_key_keeps_the_old_one_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(tmp.path().join("master.key"));
        let old = files.create().unwrap().primary().id();
        let next = files.create_next().unwrap().id();
        let during = files.load().unwrap().unwrap();
        assert_eq!(during.primary().id(), old);
        assert!(during.get(next).is_some());
        files.promote_next().unwrap();
        let after = files.load().unwrap().unwrap();
        assert_eq!(after.primary().id(), next);
        assert!(
            after.get(old).is_some(),
            "the old key stays as master.key.old"
        );
        assert!(!files.next_path().exists());
        let mode = fs::metadata(files.old_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
