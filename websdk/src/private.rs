//! The service's files, private to its user: a directory with a random name, mode 0700, created
//! exclusively (never one that someone else made first), and everything in it created
//! exclusively too, never through a symlink. A lock held for the service's life tells a later
//! service whether this one's directory is a dead one's leftover, which it then removes.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::procfs;

/// Every service directory's name starts with this.
pub(crate) const PREFIX: &str = "callagent-websdk-";
/// The lock file in a service directory, locked while its service lives.
const LOCK: &str = "service.lock";
/// A directory with no lock file is a dead service's only once this old (one that was just
/// made has no lock yet).
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// A service's own directory. Dropping it (or [`release`](Self::release)) removes it once its
/// browsers' directories are gone.
#[derive(Debug)]
pub(crate) struct ServiceDir {
    path: PathBuf,
    lock: Mutex<Option<File>>,
}

impl ServiceDir {
    /// Creates a fresh directory under `base` and locks it; first removes this user's leftovers
    /// of dead services there.
    pub(crate) fn create(base: &Path) -> io::Result<Self> {
        let path = tempfile::Builder::new()
            .prefix(PREFIX)
            .rand_bytes(16)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?
            .keep();
        let lock = create_file(&path.join(LOCK), 0o600).and_then(|file| {
            file.try_lock().map_err(io::Error::from)?;
            Ok(file)
        });
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                return Err(e);
            }
        };
        let owner = std::fs::symlink_metadata(&path)?.uid();
        let removed = remove_leftovers(base, &path, owner);
        if removed > 0 {
            tracing::info!(removed, dir = %base.display(), "removed directories of dead callagent-websdk services");
        }
        Ok(Self { path, lock: Mutex::new(Some(lock)) })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Unlocks the directory and removes it if its browsers' directories are gone (each browser's
    /// watcher removes it after its own otherwise).
    pub(crate) fn release(&self) {
        if self.lock.lock().unwrap_or_else(PoisonError::into_inner).take().is_some() {
            let _ = std::fs::remove_file(self.path.join(LOCK));
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

impl Drop for ServiceDir {
    fn drop(&mut self) {
        self.release();
    }
}

/// Creates `path` as a directory only this user can enter; an error if anything is there
/// already (a directory or a symlink).
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)
}

/// Creates `path` as a new file with `mode`; an error if anything is there already: `O_EXCL`
/// never follows a symlink.
fn create_file(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

/// Writes the launcher script at `script`: Chromium's DevTools pipe is the script's stdin
/// (Chromium's fd 3) and stdout (fd 4). Chromium is started through `setpriv --pdeathsig KILL`
/// when there is one: when the thread that started it ends (the launcher thread, which lives as
/// long as the service, or the whole process, killed or not), the kernel kills the browser, and
/// its other processes follow it.
pub(crate) fn create_launcher(script: &Path, chromium: &Path) -> io::Result<()> {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].iter().map(Path::new).find(|p| p.is_file());
    let exec = match setpriv {
        Some(setpriv) => format!("{} --pdeathsig KILL -- {}", quote(setpriv), quote(chromium)),
        None => {
            tracing::warn!("no setpriv (util-linux): Chromium will outlive this process if it is killed");
            quote(chromium)
        }
    };
    let text = format!("#!/bin/sh\nexec 3<&0 4>&1 </dev/null >/dev/null\nexec {exec} \"$@\"\n");
    create_file(script, 0o700)?.write_all(text.as_bytes())
}

/// Removes the directories under `base` of this user's (`owner`'s) services that are no longer
/// running: their lock is free, or (a directory of an older version, with no lock) the process
/// its name gives is gone. Never follows a symlink, never touches another user's directory.
/// Returns how many were removed.
fn remove_leftovers(base: &Path, own: &Path, owner: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_prefix(PREFIX)).map(str::to_owned)
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if path == own || !meta.is_dir() || meta.uid() != owner {
            continue;
        }
        let dead = match File::open(path.join(LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `{pid}-{n}`: an older version's name.
                let pid = name.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok());
                match pid {
                    Some(pid) => !procfs::alive(pid),
                    None => meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > UNLOCKED_GRACE),
                }
            }
            Err(_) => false,
        };
        // `remove_dir_all` does not follow symlinks inside the directory.
        if dead && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_service_directory_is_private_random_and_removed() {
        let base = tempfile::tempdir().unwrap();
        let a = ServiceDir::create(base.path()).unwrap();
        let b = ServiceDir::create(base.path()).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(mode(a.path()), 0o700);
        let name = a.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(PREFIX) && name.len() >= PREFIX.len() + 16, "{name}");
        assert_eq!(mode(&a.path().join(LOCK)), 0o600);
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists(), "removed with its service");
        assert!(b.path().exists(), "another live service's directory stays");
    }

    #[test]
    fn nothing_already_there_is_used() {
        let base = tempfile::tempdir().unwrap();
        let planted = base.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        assert_eq!(create_dir(&planted).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        // A symlink to a file the attacker wants written: never followed.
        let target = base.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        let link = base.path().join("chromium");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            create_launcher(&link, Path::new("/usr/bin/chromium")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        let dir_link = base.path().join("dir-link");
        std::os::unix::fs::symlink(&planted, &dir_link).unwrap();
        assert!(create_dir(&dir_link).is_err());
        // What is made is this user's alone.
        let fresh = base.path().join("fresh");
        create_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        create_launcher(&fresh.join("chromium"), Path::new("/usr/bin/it's")).unwrap();
        assert_eq!(mode(&fresh.join("chromium")), 0o700);
        let text = std::fs::read_to_string(fresh.join("chromium")).unwrap();
        assert!(text.contains(r"'/usr/bin/it'\''s' "), "quoted: {text}");
        assert!(text.contains("exec 3<&0 4>&1"), "{text}");
    }

    #[test]
    fn only_this_users_dead_services_are_cleaned_up() {
        let base = tempfile::tempdir().unwrap();
        // A live service (its lock held) and a dead one (its lock free).
        let live = ServiceDir::create(base.path()).unwrap();
        let dead = base.path().join(format!("{PREFIX}deadbeefdeadbeef"));
        create_dir(&dead).unwrap();
        create_file(&dead.join(LOCK), 0o600).unwrap();
        std::fs::write(dead.join("left"), "x").unwrap();
        // An older version's directory whose process is gone, and one whose process runs (ours).
        let old_dead = base.path().join(format!("{PREFIX}{}-0", u32::MAX - 1));
        create_dir(&old_dead).unwrap();
        let old_live = base.path().join(format!("{PREFIX}{}-0", std::process::id()));
        create_dir(&old_live).unwrap();
        // A symlink with the prefix, to a directory that must survive.
        let precious = base.path().join("precious");
        create_dir(&precious).unwrap();
        std::fs::write(precious.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&precious, base.path().join(format!("{PREFIX}link"))).unwrap();

        // Another user's dead service: not ours to remove (root can hand it over to test this).
        let theirs = base.path().join(format!("{PREFIX}theirs"));
        create_dir(&theirs).unwrap();
        let others = procfs::running_as_root()
            && std::process::Command::new("chown")
                .arg("-R")
                .arg("65534:65534")
                .arg(&theirs)
                .status()
                .is_ok_and(|s| s.success());

        let next = ServiceDir::create(base.path()).unwrap();
        if others {
            assert!(theirs.exists(), "another user's directory is never removed");
        }
        assert!(!dead.exists(), "a dead service's directory is removed");
        assert!(!old_dead.exists(), "an older version's dead directory is removed");
        assert!(live.path().exists() && old_live.exists(), "live services keep theirs");
        assert!(precious.join("keep").exists(), "a symlink is never followed");
        assert!(next.path().exists());
    }
}
