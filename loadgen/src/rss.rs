//! Peak resident memory of the platform's processes during each step: a
//! thread reads `VmRSS` from `/proc/<pid>/status` every 200 ms for the pids in
//! `--watch-pids-dir` (`<name>.pid` files, as `make run` leaves them in
//! `.work/pids/`) and `--watch NAME=PID`, plus loadgen itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often memory is read: often enough to catch a burst, cheap (one small
/// file read per process).
const INTERVAL: Duration = Duration::from_millis(200);

/// `VmRSS` of a process in KiB; `None` when it is gone (or not Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The processes named by `<name>.pid` files in `dir` (a missing folder is none).
pub fn pid_files(dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".pid")?.to_owned();
            let pid = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            Some((name, pid))
        })
        .collect();
    found.sort();
    found
}

#[derive(Default)]
struct Watched {
    /// Name → (pid, peak KiB; 0 until first read).
    peaks: BTreeMap<String, (u32, u64)>,
}

impl Watched {
    fn sample(&mut self) {
        for (pid, peak) in self.peaks.values_mut() {
            if let Some(rss) = rss_kib(*pid) {
                *peak = (*peak).max(rss);
            }
        }
    }
}

pub struct RssWatcher {
    watched: Arc<Mutex<Watched>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatcher {
    pub fn start() -> anyhow::Result<Self> {
        let watched = Arc::new(Mutex::new(Watched::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("rss-watch".into())
            .spawn({
                let (watched, stop) = (Arc::clone(&watched), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        watched
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .sample();
                        std::thread::park_timeout(INTERVAL);
                    }
                }
            })?;
        Ok(Self {
            watched,
            stop,
            thread: Some(thread),
        })
    }

    /// Starts a step: watches `processes` from now on, peaks reset.
    pub fn begin_step(&self, processes: &[(String, u32)]) {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        watched.peaks = processes
            .iter()
            .map(|(name, pid)| (name.clone(), (*pid, 0)))
            .collect();
        watched.sample();
    }

    /// Ends a step: the peak RSS (KiB) of each process that could be read.
    pub fn end_step(&self) -> BTreeMap<String, u64> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        watched.sample();
        watched
            .peaks
            .iter()
            .filter(|(_, (_, peak))| *peak > 0)
            .map(|(name, (_, peak))| (name.clone(), *peak))
            .collect()
    }
}

impl Drop for RssWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_rss_and_pid_files() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let dir = std::env::temp_dir().join(format!("loadgen-pids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("me.pid"), format!("{}\n", std::process::id())).unwrap();
        std::fs::write(dir.join("CACHEDIR.TAG"), "x").unwrap();
        assert_eq!(pid_files(&dir), vec![("me".to_owned(), std::process::id())]);
        let watcher = RssWatcher::start().unwrap();
        watcher.begin_step(&pid_files(&dir));
        assert!(watcher.end_step()["me"] > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
