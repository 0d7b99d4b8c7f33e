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
/// A service directory's name while it is being made, before its lock is held: not [`PREFIX`],
/// so no clean-up (nor an older version's) takes it for a service's directory.
const STAGING: &str = "callagent-websdk.staging-";
/// The lock file in a service directory, locked while its service lives. A file only ever gets
/// this name once it is locked.
const LOCK: &str = "service.lock";
/// The lock file's name until it is locked.
const NEW_LOCK: &str = "service.lock.new";
/// A directory with no lock file (an older version's: it made the lock after the directory) is
/// a dead service's only once this old (one that was just made has no lock yet).
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
        // Another service's clean-up, running at any moment, must never take this directory for
        // a dead one's. So it is made under a `STAGING` name, which clean-up (an older version's
        // too) does not take for a service's; its lock file is made as `NEW_LOCK`, locked, and
        // only then renamed to `LOCK`; and only then is the directory renamed to its `PREFIX`
        // name. Renames are atomic, so no one ever sees a `LOCK` file that is not locked yet, nor
        // this directory under its service name without its lock held: a clean-up that looks at
        // the staging name finds no `LOCK` (being made: spared), a held one (spared) or no
        // directory any more (renamed: skipped), and one that looks at the service name finds
        // the lock held, until `release` or this process's end lets go of it.
        let staging = tempfile::Builder::new()
            .prefix(STAGING)
            .rand_bytes(16)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?
            .keep();
        let (path, lock) = match lock_and_name(base, &staging) {
            Ok(made) => made,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
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

/// Makes and locks the `staging` directory's lock file, then gives the directory its service
/// name (the same random part, [`PREFIX`] for [`STAGING`]), in the order that
/// [`ServiceDir::create`] explains. Returns that name and the held lock.
fn lock_and_name(base: &Path, staging: &Path) -> io::Result<(PathBuf, File)> {
    let new_lock = staging.join(NEW_LOCK);
    let lock = create_file(&new_lock, 0o600)?;
    lock.try_lock().map_err(io::Error::from)?;
    std::fs::rename(&new_lock, staging.join(LOCK))?;
    let random = staging.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(STAGING));
    let Some(random) = random else {
        return Err(io::Error::other(format!("not a staging directory: {}", staging.display())));
    };
    let path = base.join(format!("{PREFIX}{random}"));
    // `rename` would replace an empty directory there: make sure nothing is (a name of 16
    // random characters is never taken but by someone who saw it). Should one appear after this
    // look all the same, the directory used is still the one made here, and nothing of the one
    // replaced (empty) is used; a non-empty directory, a file or a symlink there makes `rename`
    // fail, and a symlink is not followed.
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Ok(_) => {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        Err(e) => return Err(e),
    }
    std::fs::rename(staging, &path)?;
    Ok((path, lock))
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
/// its name gives is gone; and staging directories whose lock is free (their service died or
/// gave up after locking it). One whose service was killed in the few calls before it locked
/// stays (empty but a lock file): telling it from one being made would take a guess by its
/// age, which a stalled service can prove wrong. Never follows a symlink, never touches another
/// user's directory. Returns how many were removed.
fn remove_leftovers(base: &Path, own: &Path, owner: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let (name, staging) = match (file_name.strip_prefix(PREFIX), file_name.strip_prefix(STAGING)) {
            (Some(name), _) => (name, false),
            (None, Some(name)) => (name, true),
            (None, None) => continue,
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if path == own || !meta.is_dir() || meta.uid() != owner {
            continue;
        }
        let dead = match File::open(path.join(LOCK)) {
            // This version names a lock file so only once it is locked: free, its holder let go
            // of it (an older version's, made before it was locked, races as it always did).
            Ok(lock) => lock.try_lock().is_ok(),
            // Being made (or its maker killed before it locked: see `ServiceDir::create`).
            Err(e) if e.kind() == io::ErrorKind::NotFound && staging => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `{pid}-{n}`: an older version's name.
                let pid = name.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok());
                match pid {
                    Some(pid) => !procfs::alive(pid),
                    // An older version's service (it made the lock after the directory) that
                    // has only just made its directory, or a dead one's.
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
        // A symlink with the prefix, to a directory that must survive though it looks like a
        // dead service's (its lock free), so that only not following the link spares it.
        let precious = base.path().join("precious");
        create_dir(&precious).unwrap();
        create_file(&precious.join(LOCK), 0o600).unwrap();
        std::fs::write(precious.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&precious, base.path().join(format!("{PREFIX}link"))).unwrap();

        // Another user's dead service, dead in every other respect (its lock free): only its
        // owner makes it not ours to remove. Root can hand it over to test this.
        let theirs = base.path().join(format!("{PREFIX}theirs"));
        create_dir(&theirs).unwrap();
        create_file(&theirs.join(LOCK), 0o600).unwrap();
        std::fs::write(theirs.join("left"), "x").unwrap();
        let others = procfs::running_as_root()
            && std::process::Command::new("chown")
                .arg("-R")
                .arg("65534:65534")
                .arg(&theirs)
                .status()
                .is_ok_and(|s| s.success());
        if !others {
            eprintln!(
                "not checked that another user's directory is never removed: handing one to uid \
                 65534 takes root (and chown)"
            );
        }

        let next = ServiceDir::create(base.path()).unwrap();
        if others {
            assert!(theirs.join("left").exists(), "another user's directory is never removed");
        }
        assert!(!dead.exists(), "a dead service's directory is removed");
        assert!(!old_dead.exists(), "an older version's dead directory is removed");
        assert!(live.path().exists() && old_live.exists(), "live services keep theirs");
        assert!(precious.join("keep").exists(), "a symlink is never followed");
        assert!(next.path().exists());
    }

    #[test]
    fn a_staging_directory_is_removed_only_once_its_lock_is_free() {
        let base = tempfile::tempdir().unwrap();
        let staging = |name: &str| {
            let dir = base.path().join(format!("{STAGING}{name}"));
            create_dir(&dir).unwrap();
            dir
        };
        // One being made: its lock file is not locked yet, so it has no `LOCK`.
        let making = staging("making");
        create_file(&making.join(NEW_LOCK), 0o600).unwrap();
        // One locked, about to take its service name.
        let locked = staging("locked");
        let held = create_file(&locked.join(LOCK), 0o600).unwrap();
        held.try_lock().unwrap();
        // One whose service died (or gave up) after locking it.
        let dead = staging("dead");
        create_file(&dead.join(LOCK), 0o600).unwrap();

        let next = ServiceDir::create(base.path()).unwrap();
        assert!(making.join(NEW_LOCK).exists(), "a directory being made is never removed");
        assert!(locked.join(LOCK).exists(), "a locked one is never removed");
        assert!(!dead.exists(), "one whose lock is free is removed");
        let name = next.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(PREFIX) && name.len() == PREFIX.len() + 16, "{name}");
        let staged = std::fs::read_dir(base.path()).unwrap().filter_map(Result::ok);
        let staged: Vec<_> =
            staged.filter(|e| e.file_name().to_string_lossy().starts_with(STAGING)).collect();
        assert_eq!(staged.len(), 2, "the service's own staging name is gone: {staged:?}");
        drop(held);
    }

    #[test]
    fn services_starting_together_never_remove_each_others_directory() {
        // Each thread is a service starting and stopping over and over in one base directory,
        // holding its last directory while it makes the next (so every clean-up has others to
        // look at), and checking that what it holds is still there and usable.
        const THREADS: usize = 4;
        const ROUNDS: usize = 1000;
        let base = tempfile::tempdir().unwrap();
        let check = |dir: &ServiceDir| -> Result<(), String> {
            let browser = dir.path().join("browser");
            create_dir(&browser)
                .and_then(|()| std::fs::remove_dir(&browser))
                .and_then(|()| std::fs::symlink_metadata(dir.path().join(LOCK)).map(drop))
                .map_err(|e| format!("{}: {e}", dir.path().display()))
        };
        let failures: Vec<String> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        let mut failures = Vec::new();
                        let mut held: Option<ServiceDir> = None;
                        for _ in 0..ROUNDS {
                            match ServiceDir::create(base.path()) {
                                Ok(dir) => {
                                    failures.extend(held.as_ref().and_then(|d| check(d).err()));
                                    failures.extend(check(&dir).err());
                                    held = Some(dir);
                                }
                                Err(e) => failures.push(format!("create: {e}")),
                            }
                        }
                        failures.extend(held.as_ref().and_then(|d| check(d).err()));
                        failures
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        assert!(
            failures.is_empty(),
            "{} failures in {} creations, e.g. {:?}",
            failures.len(),
            THREADS * ROUNDS,
            &failures[..failures.len().min(3)]
        );
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "every directory is removed");
    }
}

#[cfg(test)]
mod edge_cases {
    use super::*;

    /// a staging directory with no LOCK yet stays however old it is.
    #[test]
    fn s_an_old_staging_directory_with_no_lock_stays() {
        let base = tempfile::tempdir().unwrap();
        let making = base.path().join(format!("{STAGING}making"));
        create_dir(&making).unwrap();
        create_file(&making.join(NEW_LOCK), 0o600).unwrap();
        let old = std::time::SystemTime::now() - 10 * UNLOCKED_GRACE;
        File::open(&making).unwrap().set_modified(old).unwrap();
        let _next = ServiceDir::create(base.path()).unwrap();
        assert!(making.join(NEW_LOCK).exists(), "removed");
    }

    /// lock_and_name never renames over something already at the service name.
    #[test]
    fn s_a_taken_name_is_not_renamed_over() {
        let base = tempfile::tempdir().unwrap();
        let staging = base.path().join(format!("{STAGING}abcdefghijklmnop"));
        create_dir(&staging).unwrap();
        let taken = base.path().join(format!("{PREFIX}abcdefghijklmnop"));
        create_dir(&taken).unwrap();
        let err = lock_and_name(base.path(), &staging).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(staging.exists() && taken.exists());
    }
}
