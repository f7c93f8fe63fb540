//! The master key's files: `master.key` (the key in use), `master.key.next` (the key a
//! rotation is moving to) and `master.key.old.<key id>` (each key a finished rotation moved
//! from; `master.key.old`, written by an earlier kami, is still read).
//!
//! A key file holds the 32 key bytes, raw or as 64 hex digits (one optional newline). It is
//! written with mode 0600 in a directory created 0700, complete and fsynced under a temporary
//! name before it appears under its own (a crash never leaves half a key file), fsynced with
//! its directory before anything is sealed under it, and never replaced: a rotation writes
//! `.next` first, keeps the current key as `.old.<its id>`, and only then renames `.next` over
//! `master.key`. Old key files are never overwritten, so no key is ever lost to a file write.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::sealed::{KeyId, Keyring, MasterKey, KEY_ID_LEN, MASTER_KEY_LEN};

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

/// Write a new key file (mode 0600, must not exist yet) and fsync it and its directory. The
/// bytes are written and fsynced under a temporary name and then linked to `path`, so `path` never
/// exists half-written.
fn write_new(path: &Path, key: &MasterKey) -> Result<()> {
    let dir = parent(path);
    create_private_dir(dir)?;
    // A name of its own: processes creating the same key file at once never share it.
    let tmp = with_suffix(
        path,
        &format!(".{}-{:016x}.tmp", std::process::id(), rand::random::<u64>()),
    );
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("cannot create the key file", &tmp, e))?;
        f.write_all(key.raw())
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("cannot write the key file", &tmp, e))?;
    }
    // A link, unlike a rename, fails if `path` exists: nothing is ever overwritten.
    let linked =
        fs::hard_link(&tmp, path).map_err(|e| io_err("cannot create the key file", path, e));
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(dir)
}

/// Is `name` `<base>.old.<16 hex digits>`?
fn is_old_key_name(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|r| r.strip_prefix(".old."))
        .is_some_and(|id| id.len() == 2 * KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()))
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

    /// `master.key.old`, where an earlier kami kept the one key it rotated from (still read).
    pub fn old_path(&self) -> PathBuf {
        with_suffix(&self.path, ".old")
    }

    /// `master.key.old.<id>`: where a rotation keeps the key `id` it moved from.
    pub fn old_key_path(&self, id: KeyId) -> PathBuf {
        with_suffix(&self.path, &format!(".old.{id}"))
    }

    /// Every `master.key.old.<id>` present, in name order.
    pub fn old_key_paths(&self) -> Result<Vec<PathBuf>> {
        let dir = parent(&self.path);
        let Some(base) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list the directory", dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list the directory", dir, e))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| is_old_key_name(n, base))
            {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The keys on disk: `master.key` seals; `.next`, `.old` and every `.old.<id>` (when
    /// present) also open. `None` when `master.key` does not exist.
    pub fn load(&self) -> Result<Option<Keyring>> {
        let Some(primary) = read_key(&self.path)? else {
            return Ok(None);
        };
        let mut others = Vec::new();
        let paths = [self.next_path(), self.old_path()]
            .into_iter()
            .chain(self.old_key_paths()?);
        for p in paths {
            if let Some(k) = read_key(&p)? {
                if is_old_key_name(
                    &p.file_name().unwrap_or_default().to_string_lossy(),
                    &self.path.file_name().unwrap_or_default().to_string_lossy(),
                ) && p != self.old_key_path(k.id())
                {
                    tracing::warn!(file = %p.display(), "this old key file holds key {}, not the key its name says", k.id());
                }
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

    /// Keep `key` (the current key) as `master.key.old.<its id>`; already kept is fine.
    pub fn keep_old(&self, key: &MasterKey) -> Result<PathBuf> {
        let path = self.old_key_path(key.id());
        match read_key(&path)? {
            Some(k) if k.id() == key.id() => return Ok(path),
            Some(k) => {
                return Err(StoreError::Key(format!(
                    "{} holds key {}, not the key its name says; move it away (it may be needed \
                     to read an older backup) and run the rotation again",
                    path.display(),
                    k.id()
                )))
            }
            None => {}
        }
        write_new(&path, key)?;
        Ok(path)
    }

    /// Rename `master.key.next` over `master.key`, once the key `master.key` holds is kept
    /// beside it (`.old.<id>`, or `.old` from an earlier kami): at every moment `master.key`
    /// holds the old or the new key, and the other one sits beside it.
    pub fn switch_to_next(&self) -> Result<()> {
        let current = read_key(&self.path)?
            .ok_or_else(|| StoreError::Key(format!("{} is missing", self.path.display())))?;
        let kept = [self.old_key_path(current.id()), self.old_path()]
            .iter()
            .map(|p| read_key(p))
            .collect::<Result<Vec<_>>>()?
            .iter()
            .any(|k| k.as_ref().is_some_and(|k| k.id() == current.id()));
        if !kept {
            return Err(StoreError::Key(format!(
                "refusing to replace {}: its key {} is not kept in {} yet",
                self.path.display(),
                current.id(),
                self.old_key_path(current.id()).display()
            )));
        }
        fs::rename(self.next_path(), &self.path)
            .map_err(|e| io_err("cannot rename the next key over", &self.path, e))?;
        sync_dir(parent(&self.path))
    }

    /// Finish a rotation on disk: [`KeyFiles::keep_old`] the current key, then
    /// [`KeyFiles::switch_to_next`].
    pub fn promote_next(&self) -> Result<()> {
        let current = read_key(&self.path)?
            .ok_or_else(|| StoreError::Key(format!("{} is missing", self.path.display())))?;
        self.keep_old(&current)?;
        self.switch_to_next()
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
    fn promoting_the_next_key_keeps_every_old_one_beside_it_under_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(tmp.path().join("master.key"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut olds = vec![files.create().unwrap().primary().id()];
        for _ in 0..3 {
            let old = *olds.last().unwrap();
            let next = files.create_next().unwrap().id();
            let during = files.load().unwrap().unwrap();
            assert_eq!(during.primary().id(), old);
            assert!(during.get(next).is_some());
            files.promote_next().unwrap();
            let after = files.load().unwrap().unwrap();
            assert_eq!(after.primary().id(), next);
            for id in &olds {
                assert!(after.get(*id).is_some(), "old key {id} lost");
                assert_eq!(mode(&files.old_key_path(*id)), 0o600);
            }
            assert!(!files.next_path().exists());
            olds.push(next);
        }
        assert_eq!(files.old_key_paths().unwrap().len(), 3);
        assert!(!files.old_path().exists());
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn the_current_key_is_never_replaced_before_it_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(tmp.path().join("master.key"));
        let old = files.create().unwrap().primary().id();
        files.create_next().unwrap();
        let err = files.switch_to_next().unwrap_err().to_string();
        assert!(err.contains("is not kept"), "{err}");
        assert_eq!(files.load().unwrap().unwrap().primary().id(), old);
        // A file under the old key's name that holds another key is not trusted or replaced.
        let other = MasterKey::generate().unwrap();
        fs::write(files.old_key_path(old), other.raw()).unwrap();
        let current = files.load().unwrap().unwrap();
        let err = files.keep_old(current.primary()).unwrap_err().to_string();
        assert!(err.contains("not the key its name says"), "{err}");
        assert_eq!(fs::read(files.old_key_path(old)).unwrap(), other.raw());
        // A half-written temporary file left by a crash is not read as a key.
        fs::remove_file(files.old_key_path(old)).unwrap();
        fs::write(with_suffix(&files.old_key_path(old), ".1-00.tmp"), b"half").unwrap();
        files.promote_next().unwrap();
        assert!(files.load().unwrap().unwrap().get(old).is_some());
        // A key file already present is never overwritten.
        assert!(files.create_next().is_ok());
        assert!(files.create_next().is_err());
    }
}
