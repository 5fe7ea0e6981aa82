//! Prefetching, as Caffe's data layers do it: a background thread prepares the next batches (reading records or
//! files, decoding and transforming them) while the net computes, and hands them over through a bounded
//! channel (`data_param.prefetch` batches, 4 by default).
//!
//! The thread owns the [`BatchSource`] (reader position, generators) and makes batches strictly one after
//! another, so the batches depend only on the source's starting state, never on timing: a seed gives the same
//! batches on every run. Each batch travels with the source's position after it, so the [`Prefetcher`] knows
//! the position of the next batch it will hand out ([`Prefetcher::position`]), which is what a solverstate
//! saves; batches made ahead and not yet handed out are simply made again after a resume.
//!
//! An error in the thread (a corrupt record, an unreadable image) ends the thread and is returned by the next
//! [`Prefetcher::next_batch`], and by every one after it; a panic in the thread is reported the same way.
//! Dropping the prefetcher (or [`Prefetcher::set_position`]) stops the thread: a stop flag the source checks
//! between images, and the channel's closing, end it within one image, and the thread is joined. Batch buffers
//! go back to the thread to be refilled, so handing out batches allocates nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The most batches a data layer may prefetch (each is held in memory).
pub const MAX_PREFETCH: usize = 256;

/// One batch: `batch_size` transformed images one after another, their labels, and where each was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub data: Vec<f32>,
    pub label: Vec<f32>,
    /// Per image, where it was read (`key "00000007_cat.jpg" of train_lmdb`), for errors about its values
    /// further on. The strings are rewritten in place batch after batch, so they keep their room.
    pub origins: Vec<String>,
}

impl Batch {
    /// A batch of `data` values and `label` labels (one per image), zeroed; an error when the memory for it
    /// cannot be had.
    pub fn new(data: usize, label: usize) -> Result<Self, String> {
        let what = || format!("a batch of {data} values");
        Ok(Batch {
            data: crate::memory::zeroed(data, what).map_err(|e| e.to_string())?,
            label: crate::memory::zeroed(label, what).map_err(|e| e.to_string())?,
            origins: crate::memory::zeroed(label, what).map_err(|e| e.to_string())?,
        })
    }
}

/// How [`BatchSource::fill`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The batch is complete.
    Done,
    /// The stop flag was seen: the batch is incomplete and the source stands somewhere inside it.
    Stopped,
}

/// What makes a data layer's batches, one after another, on the prefetch thread.
pub trait BatchSource: Send + 'static {
    /// Fills `batch` with the next batch, checking `stop` between images. Errors name the record or file.
    fn fill(&mut self, batch: &mut Batch, stop: &AtomicBool) -> Result<Fill, String>;

    /// Where the next batch starts, in the source's own encoding (for solverstates).
    fn position(&self) -> Vec<u8>;

    /// Moves to a position returned by [`BatchSource::position`]; an error when the bytes are not one.
    fn set_position(&mut self, position: &[u8]) -> Result<(), String>;
}

enum Message {
    /// A batch and the source's position after it.
    Batch(Batch, Vec<u8>),
    Failed(String),
}

/// The running thread and its channels.
struct Worker<S> {
    batches: Receiver<Message>,
    recycle: Sender<Batch>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<S>,
}

/// Batches from a [`BatchSource`] made ahead on a background thread. See the module documentation.
pub struct Prefetcher<S: BatchSource> {
    /// The source while no thread holds it.
    source: Option<S>,
    worker: Option<Worker<S>>,
    depth: usize,
    sizes: (usize, usize),
    /// The position of the next batch [`Self::next_batch`] hands out.
    next: Vec<u8>,
    /// The error that stopped the thread, returned by every later call.
    failed: Option<String>,
    /// The origins of the batch last handed out (swapped out of it, so nothing is copied).
    origins: Vec<String>,
}

impl<S: BatchSource> Prefetcher<S> {
    /// A prefetcher of batches of `data` values and `label` labels from `source`, keeping up to `depth`
    /// batches ready. The thread starts at the first [`Self::next_batch`].
    pub fn new(source: S, depth: usize, data: usize, label: usize) -> Self {
        Prefetcher {
            next: source.position(),
            source: Some(source),
            worker: None,
            depth: depth.min(MAX_PREFETCH),
            sizes: (data, label),
            failed: None,
            origins: Vec::new(),
        }
    }

    /// Where image `item` of the batch last handed out was read, as its source wrote it.
    pub fn origin(&self, item: usize) -> Option<&str> {
        self.origins
            .get(item)
            .map(String::as_str)
            .filter(|o| !o.is_empty())
    }

    /// The position of the next batch [`Self::next_batch`] will hand out (not the thread's, which is ahead).
    pub fn position(&self) -> &[u8] {
        &self.next
    }

    /// Stops the thread, drops the batches made ahead and moves the source to `position`; the next batch
    /// starts there. Clears an earlier error.
    pub fn set_position(&mut self, position: &[u8]) -> Result<(), String> {
        self.halt();
        let source = self.source.as_mut().ok_or_else(|| {
            self.failed
                .clone()
                .unwrap_or_else(|| "the data source was lost".into())
        })?;
        source.set_position(position)?;
        self.next = source.position();
        self.failed = None;
        Ok(())
    }

    /// Copies the next batch into `data` and `label` (when given; a label top is optional), starting the thread
    /// if it is not running.
    pub fn next_batch(
        &mut self,
        data: &mut [f32],
        label: Option<&mut [f32]>,
    ) -> Result<(), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if data.len() != self.sizes.0 || label.as_ref().is_some_and(|l| l.len() != self.sizes.1) {
            return Err(format!(
                "the tops hold {} data values and {} labels; a batch has {} and {}",
                data.len(),
                label.as_ref().map_or(0, |l| l.len()),
                self.sizes.0,
                self.sizes.1
            ));
        }
        self.start()?;
        let Some(worker) = &self.worker else {
            return Err("the prefetch thread did not start".into());
        };
        match worker.batches.recv() {
            Ok(Message::Batch(mut batch, position)) => {
                std::mem::swap(&mut self.origins, &mut batch.origins);
                data.copy_from_slice(&batch.data);
                if let Some(label) = label {
                    label.copy_from_slice(&batch.label);
                }
                self.next = position;
                // The thread may have ended already; the buffer is then dropped.
                let _ = worker.recycle.send(batch);
                Ok(())
            }
            Ok(Message::Failed(error)) => {
                self.halt();
                self.failed = Some(error.clone());
                Err(error)
            }
            Err(_) => {
                // The thread ended without a word: it panicked (halt reports how).
                self.halt();
                let error = self
                    .failed
                    .get_or_insert_with(|| "the prefetch thread stopped unexpectedly".into());
                Err(error.clone())
            }
        }
    }

    /// Starts the thread with the source, at the position of the next batch.
    fn start(&mut self) -> Result<(), String> {
        if self.worker.is_some() {
            return Ok(());
        }
        let Some(mut source) = self.source.take() else {
            return Err(self
                .failed
                .clone()
                .unwrap_or_else(|| "the data source was lost".into()));
        };
        let (sender, batches) = mpsc::sync_channel(self.depth);
        let (recycle, recycled) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sizes = self.sizes;
        let spawned = std::thread::Builder::new()
            .name("crema-prefetch".into())
            .spawn(move || {
                produce(&mut source, &sender, &recycled, &flag, sizes);
                source
            });
        match spawned {
            Ok(handle) => {
                self.worker = Some(Worker {
                    batches,
                    recycle,
                    stop,
                    handle,
                });
                Ok(())
            }
            Err(e) => {
                let error = format!("cannot start the prefetch thread: {e}");
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Stops and joins the thread, taking the source back and moving it to the next batch's position.
    fn halt(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        worker.stop.store(true, Ordering::Relaxed);
        // Closing the channel ends a thread waiting to hand a batch over.
        drop(worker.batches);
        drop(worker.recycle);
        match worker.handle.join() {
            Ok(mut source) => {
                if let Err(e) = source.set_position(&self.next) {
                    self.failed = Some(format!("cannot return to the saved position: {e}"));
                }
                self.source = Some(source);
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                self.failed = Some(format!("the prefetch thread panicked: {what}"));
            }
        }
    }
}

impl<S: BatchSource> Drop for Prefetcher<S> {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The prefetch thread: fills batches and sends them with the position after each, until stopped, the
/// channel closes, or the source fails.
fn produce<S: BatchSource>(
    source: &mut S,
    sender: &SyncSender<Message>,
    recycled: &Receiver<Batch>,
    stop: &AtomicBool,
    (data, label): (usize, usize),
) {
    while !stop.load(Ordering::Relaxed) {
        let batch = recycled.try_recv().or_else(|_| Batch::new(data, label));
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                let _ = sender.send(Message::Failed(error));
                return;
            }
        };
        // A recycled batch carries the origins swapped out at the hand-over: the strings of an older batch,
        // or none the first time round.
        batch.origins.resize(label, String::new());
        match source.fill(&mut batch, stop) {
            Ok(Fill::Done) => {
                let position = source.position();
                if sender.send(Message::Batch(batch, position)).is_err() {
                    return;
                }
            }
            Ok(Fill::Stopped) => return,
            Err(error) => {
                let _ = sender.send(Message::Failed(error));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts up: batch k holds k·n .. k·n + n; fails at `fail_at`, panics at `panic_at`.
    struct Counter {
        next: u64,
        fail_at: Option<u64>,
        panic_at: Option<u64>,
        made: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Counter {
        fn new() -> Self {
            Counter {
                next: 0,
                fail_at: None,
                panic_at: None,
                made: Arc::new(AtomicUsize::new(0)),
                delay: Duration::ZERO,
            }
        }
    }

    impl BatchSource for Counter {
        fn fill(&mut self, batch: &mut Batch, stop: &AtomicBool) -> Result<Fill, String> {
            for (i, v) in batch.data.iter_mut().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Fill::Stopped);
                }
                if Some(self.next) == self.fail_at {
                    return Err(format!("item {} is corrupt", self.next));
                }
                if Some(self.next) == self.panic_at {
                    panic!("item {} exploded", self.next);
                }
                std::thread::sleep(self.delay);
                *v = self.next as f32;
                if let Some(l) = batch.label.get_mut(i) {
                    *l = -(self.next as f32);
                }
                self.next += 1;
            }
            self.made.fetch_add(1, Ordering::Relaxed);
            Ok(Fill::Done)
        }

        fn position(&self) -> Vec<u8> {
            self.next.to_le_bytes().to_vec()
        }

        fn set_position(&mut self, position: &[u8]) -> Result<(), String> {
            let bytes: [u8; 8] = position
                .try_into()
                .map_err(|_| "not a position".to_owned())?;
            self.next = u64::from_le_bytes(bytes);
            Ok(())
        }
    }

    fn batch(p: &mut Prefetcher<Counter>) -> Result<(Vec<f32>, Vec<f32>), String> {
        let (mut data, mut label) = (vec![0.0; 3], vec![0.0; 3]);
        p.next_batch(&mut data, Some(&mut label))?;
        Ok((data, label))
    }

    #[test]
    fn batches_come_in_order_and_the_position_is_the_next_handed_out() {
        let mut p = Prefetcher::new(Counter::new(), 4, 3, 3);
        assert_eq!(p.position(), 0u64.to_le_bytes());
        assert_eq!(
            batch(&mut p).unwrap(),
            (vec![0.0, 1.0, 2.0], vec![0.0, -1.0, -2.0])
        );
        // Let the thread run ahead; the position stays that of the next batch handed out.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(p.position(), 3u64.to_le_bytes());
        assert_eq!(batch(&mut p).unwrap().0, [3.0, 4.0, 5.0]);
        let saved = p.position().to_vec();
        let expected: Vec<Vec<f32>> = (0..3).map(|_| batch(&mut p).unwrap().0).collect();
        // Back to the saved position: the same batches again, the ones made ahead dropped.
        p.set_position(&saved).unwrap();
        let again: Vec<Vec<f32>> = (0..3).map(|_| batch(&mut p).unwrap().0).collect();
        assert_eq!(again, expected);
        assert!(p.set_position(&[1, 2]).is_err());
        // The label top is optional.
        let mut data = vec![0.0; 3];
        p.next_batch(&mut data, None).unwrap();
        assert_eq!(data, [15.0, 16.0, 17.0]);
        assert!(p.next_batch(&mut [0.0; 2], None).is_err());
    }

    #[test]
    fn the_thread_stays_within_the_depth_and_stops_on_drop() {
        let source = Counter::new();
        let made = Arc::clone(&source.made);
        let mut p = Prefetcher::new(source, 2, 3, 3);
        batch(&mut p).unwrap();
        // One handed out, 2 queued, one more waiting to be sent; then no more.
        let waited = std::time::Instant::now();
        while made.load(Ordering::Relaxed) < 4 && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(made.load(Ordering::Relaxed), 4);
        drop(p);
        // A slow source stops within an item.
        let mut source = Counter::new();
        source.delay = Duration::from_millis(20);
        let mut p = Prefetcher::new(source, 4, 3, 3);
        batch(&mut p).unwrap();
        let started = std::time::Instant::now();
        drop(p);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn errors_and_panics_reach_the_caller() {
        let mut source = Counter::new();
        source.fail_at = Some(4);
        let mut p = Prefetcher::new(source, 4, 3, 3);
        batch(&mut p).unwrap();
        let err = batch(&mut p).unwrap_err();
        assert_eq!(err, "item 4 is corrupt");
        assert_eq!(batch(&mut p).unwrap_err(), err);
        // Moving elsewhere clears the error.
        p.set_position(&6u64.to_le_bytes()).unwrap();
        assert_eq!(batch(&mut p).unwrap().0, [6.0, 7.0, 8.0]);

        let mut source = Counter::new();
        source.panic_at = Some(1);
        let mut p = Prefetcher::new(source, 4, 3, 3);
        let err = batch(&mut p).unwrap_err();
        assert!(err.contains("panicked: item 1 exploded"), "{err}");
        assert_eq!(batch(&mut p).unwrap_err(), err);
        assert!(p.set_position(&0u64.to_le_bytes()).is_err());
    }
}
