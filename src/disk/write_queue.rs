//! [`WriteQueue`]: positional writes into one file, done by a few writer threads.
//!
//! The caller hands over [`SharedBuffer`] ranges with their file offsets and goes on
//! reading and looking at the next bytes while earlier ones are written; several writes
//! are in flight at once, so a device that is slow per request (small `O_DIRECT` writes
//! at queue depth 1) is kept busy. No byte is copied: a buffer goes back to its pool
//! when its last write is done. Bytes go out through [`write_direct_or_cached`], past the
//! page cache where the file system allows. Writes may complete in any order, so ranges
//! handed over must not overlap. The first failure is reported by the next call; once
//! one write failed (or the queue is dropped unfinished) the remaining ones are skipped.
//! Owns the writer threads only; the file's life cycle is the caller's.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::buffers::SharedBuffer;
use super::direct::{reopen_direct, write_direct_or_cached};

/// One write: `data[range]` at file offset `offset`.
struct Job {
    data: SharedBuffer,
    range: Range<usize>,
    offset: u64,
}

/// What the writers report back.
#[derive(Default)]
struct Status {
    in_flight: usize,
    /// The first error, until it is reported.
    failure: Option<io::Error>,
    /// Set once anything failed or the queue was abandoned: skip the remaining writes.
    stopped: bool,
}

struct Shared {
    status: Mutex<Status>,
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Status> {
        // Status holds plain counters: a panic elsewhere cannot leave it inconsistent.
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writer threads for one file.
pub struct WriteQueue {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl WriteQueue {
    /// Starts `writers` threads (at least one) writing into `file` (through a duplicate
    /// descriptor and, where the file system allows, an `O_DIRECT` one).
    pub fn new(file: &File, writers: usize) -> io::Result<Self> {
        let file = Arc::new(file.try_clone()?);
        let direct = reopen_direct(&file).map(Arc::new);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let shared = Arc::new(Shared {
            status: Mutex::new(Status::default()),
            idle: Condvar::new(),
        });
        let mut this = Self {
            jobs: Some(jobs),
            workers: Vec::new(),
            shared,
        };
        for _ in 0..writers.max(1) {
            let (file, direct) = (Arc::clone(&file), direct.clone());
            let (queue, shared) = (Arc::clone(&queue), Arc::clone(&this.shared));
            let worker = std::thread::Builder::new()
                .name("imgferry-writer".to_owned())
                .spawn(move || run_writer(&file, direct.as_deref(), &queue, &shared))?;
            this.workers.push(worker);
        }
        Ok(this)
    }

    /// Queues the write of `data[range]` at `offset`. Fails with the error of an earlier
    /// write, if one failed.
    pub fn submit(&self, data: SharedBuffer, range: Range<usize>, offset: u64) -> io::Result<()> {
        if range.start > range.end || range.end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write of {range:?} outside a buffer of {} bytes",
                    data.len()
                ),
            ));
        }
        if range.is_empty() {
            return Ok(());
        }
        {
            let mut status = self.shared.lock();
            take_failure(&mut status)?;
            status.in_flight += 1;
        }
        let sent = self.jobs.as_ref().is_some_and(|jobs| {
            jobs.send(Job {
                data,
                range,
                offset,
            })
            .is_ok()
        });
        if !sent {
            self.shared.lock().in_flight -= 1;
            return Err(io::Error::other("the writer threads have stopped"));
        }
        Ok(())
    }

    /// Waits until every queued write is done; fails if any failed.
    pub fn wait_idle(&self) -> io::Result<()> {
        let mut status = self.shared.lock();
        while status.in_flight > 0 {
            status = self
                .shared
                .idle
                .wait(status)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        take_failure(&mut status)
    }

    /// Waits for every queued write, stops the threads and reports the first failure.
    pub fn finish(mut self) -> io::Result<()> {
        let outcome = self.wait_idle();
        self.stop();
        outcome
    }

    fn stop(&mut self) {
        self.jobs = None; // the writers leave once the queue is empty
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for WriteQueue {
    /// An unfinished queue is abandoned: queued writes are skipped, not waited for.
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.stop();
    }
}

/// Hands over the first failure once; after that, a plain "an earlier write failed".
fn take_failure(status: &mut Status) -> io::Result<()> {
    match status.failure.take() {
        Some(error) => Err(error),
        None if status.stopped => Err(io::Error::other("an earlier write failed")),
        None => Ok(()),
    }
}

fn run_writer(file: &File, direct: Option<&File>, queue: &Mutex<Receiver<Job>>, shared: &Shared) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return; // the queue is closed and empty
        };
        let skip = shared.lock().stopped;
        let outcome = match skip {
            true => Ok(()),
            false => write_direct_or_cached(file, direct, &job.data[job.range.clone()], job.offset),
        };
        drop(job); // the buffer goes back to its pool before anyone is woken
        let mut status = shared.lock();
        if let Err(error) = outcome {
            status.stopped = true;
            status.failure.get_or_insert(error);
        }
        status.in_flight -= 1;
        if status.in_flight == 0 {
            shared.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::disk::buffers::BufferPool;

    #[test]
    fn queued_writes_land_at_their_offsets_and_buffers_return() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let pool = BufferPool::new(2, 3 * 4096);
        let queue = WriteQueue::new(&file, 3).unwrap();
        let mut expected = vec![0u8; 64 * 4096];
        for round in 0..16u8 {
            let mut buffer = pool.take(); // waits for a buffer the writers let go of
            buffer.as_mut_slice().fill(round + 1);
            let shared = buffer.share(3 * 4096);
            // an aligned piece and an unaligned one from the same buffer
            let offset = u64::from(round) * 4 * 4096;
            queue.submit(shared.clone(), 0..4096, offset).unwrap();
            queue
                .submit(shared, 4096..3 * 4096 - 5, offset + 4096 + 3)
                .unwrap();
            let at = offset as usize;
            expected[at..at + 4096].fill(round + 1);
            expected[at + 4096 + 3..at + 3 * 4096 - 2].fill(round + 1);
        }
        queue.finish().unwrap();
        let mut got = vec![0u8; expected.len()];
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut got[..len], 0)
            .unwrap();
        assert!(got == expected, "file content differs");
    }

    #[test]
    fn a_failed_write_is_reported_and_stops_the_rest() {
        // A pipe takes no positioned writes (ESPIPE), direct or not.
        let (_reader, writer) = std::io::pipe().unwrap();
        let unwritable = File::from(std::os::fd::OwnedFd::from(writer));
        let pool = BufferPool::new(1, 4096);
        let queue = WriteQueue::new(&unwritable, 2).unwrap();
        let shared = pool.take().share(4096);
        queue.submit(shared.clone(), 0..4096, 0).unwrap();
        assert!(
            queue.wait_idle().is_err(),
            "a positioned write into a pipe fails"
        );
        assert!(queue.submit(shared, 0..10, 0).is_err(), "and stays failed");
        assert!(queue.finish().is_err());
    }
}
