//! [`Prefetch`]: prepare batches on worker threads while the model trains.
//!
//! Workers take batch numbers in order from a shared counter and prepare them with a
//! user function; the iterator hands the results back in batch order, whatever the
//! number of workers and however long each batch takes. At most `depth` batches are
//! prepared ahead of the one the consumer is waiting for, which bounds memory.
//!
//! Because each batch's contents depend only on its indices and on
//! `(seed, epoch, index)` for augmentation, the output is identical with 1 or 16
//! workers.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::Error;
use crate::vision::Normalization;
use crate::vision::image_folder::{ImageFolder, Transform};

/// Shared progress: the next batch to hand out and how many the consumer has taken.
struct State {
    next_job: usize,
    consumed: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left consistent counters.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// An iterator over prepared batches, in order, prepared ahead by worker threads.
///
/// ```
/// use bigbatch_data::pipeline::Prefetch;
///
/// let batches = vec![vec![0, 1], vec![2, 3], vec![4]];
/// let sums: Vec<usize> = Prefetch::new(batches, 2, 2, |_, batch: &[usize]| Ok(batch.iter().sum()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(sums, [1, 5, 4]);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub struct Prefetch<T> {
    shared: Arc<Shared>,
    results: Receiver<(usize, Result<T, Error>)>,
    pending: BTreeMap<usize, Result<T, Error>>,
    next: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `workers` threads preparing `prepare(batch_number, indices)` for each of
    /// `batches`, at most `depth` ahead of the consumer.
    ///
    /// # Panics
    ///
    /// If `workers` or `depth` is 0, or a thread cannot be spawned.
    pub fn new<F>(batches: Vec<Vec<usize>>, workers: usize, depth: usize, prepare: F) -> Self
    where
        F: Fn(usize, &[usize]) -> Result<T, Error> + Send + Sync + 'static,
    {
        assert!(
            workers > 0 && depth > 0,
            "workers and depth must be positive"
        );
        let total = batches.len();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: 0,
                consumed: 0,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let batches = Arc::new(batches);
        let prepare = Arc::new(prepare);
        let (sender, results) = channel();
        let handles = (0..workers.min(total.max(1)))
            .map(|worker| {
                let (shared, batches, prepare, sender) = (
                    Arc::clone(&shared),
                    Arc::clone(&batches),
                    Arc::clone(&prepare),
                    sender.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("prefetch-{worker}"))
                    .spawn(move || {
                        loop {
                            let job = {
                                let mut state = shared.lock();
                                while !state.stop
                                    && state.next_job < batches.len()
                                    && state.next_job >= state.consumed + depth
                                {
                                    state = shared
                                        .wake
                                        .wait(state)
                                        .unwrap_or_else(|poison| poison.into_inner());
                                }
                                if state.stop || state.next_job >= batches.len() {
                                    return;
                                }
                                state.next_job += 1;
                                state.next_job - 1
                            };
                            let result =
                                catch_unwind(AssertUnwindSafe(|| prepare(job, &batches[job])))
                                    .unwrap_or(Err(Error::WorkerPanicked { batch: job }));
                            if sender.send((job, result)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn a prefetch worker thread")
            })
            .collect();
        Prefetch {
            shared,
            results,
            pending: BTreeMap::new(),
            next: 0,
            total,
            workers: handles,
        }
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Result<T, Error>> {
        if self.next >= self.total {
            return None;
        }
        let result = loop {
            if let Some(result) = self.pending.remove(&self.next) {
                break result;
            }
            match self.results.recv() {
                Ok((job, result)) => {
                    self.pending.insert(job, result);
                }
                // Every worker is gone without producing this batch.
                Err(_) => break Err(Error::WorkerPanicked { batch: self.next }),
            }
        };
        self.next += 1;
        self.shared.lock().consumed = self.next;
        self.shared.wake.notify_all();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            // A panicking worker already reported itself through its batch's result.
            let _ = worker.join();
        }
    }
}

/// A prepared batch: normalised `f32` inputs `N × C × H × W` and labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageBatch {
    /// Inputs, `N × C × H × W`.
    pub inputs: Vec<f32>,
    /// Labels, `N`.
    pub labels: Vec<u32>,
}

/// Decodes and transforms `folder`'s images for `batches` on `workers` threads, at
/// most `depth` batches ahead: ImageNet's input pipeline. Augmentation is seeded by
/// `(seed, epoch, index)`, so the batches do not depend on `workers`.
///
/// # Panics
///
/// As [`Prefetch::new`]; a worker's panic (e.g. `norm` without 3 channels) is
/// reported as [`Error::WorkerPanicked`].
///
/// ```no_run
/// use std::sync::Arc;
/// use bigbatch_data::{pipeline, vision::{imagenet, image_folder::Transform}, Batches};
///
/// let train = Arc::new(imagenet::train("data/imagenet".as_ref())?);
/// let batches: Vec<Vec<usize>> = Batches::shuffled(train.len(), 256, 0, 0, true).collect();
/// let norm = imagenet::normalization();
/// for batch in pipeline::image_batches(train, batches, Transform::IMAGENET_TRAIN, norm, (0, 0), 8, 4) {
///     let batch = batch?; // 256 × 3 × 224 × 224
/// }
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn image_batches(
    folder: Arc<ImageFolder>,
    batches: Vec<Vec<usize>>,
    transform: Transform,
    norm: Normalization,
    (seed, epoch): (u64, u64),
    workers: usize,
    depth: usize,
) -> Prefetch<ImageBatch> {
    Prefetch::new(batches, workers, depth, move |_, indices| {
        let mut batch = ImageBatch::default();
        folder.batch_into(
            indices,
            &transform,
            &norm,
            (seed, epoch),
            &mut batch.inputs,
            &mut batch.labels,
        )?;
        Ok(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn order_is_kept_whatever_the_timing() {
        // Later batches finish first: results must still come back in order.
        let batches: Vec<Vec<usize>> = (0..12).map(|i| vec![i]).collect();
        for workers in [1, 3] {
            let out: Vec<usize> = Prefetch::new(batches.clone(), workers, 4, |job, b: &[usize]| {
                std::thread::sleep(Duration::from_millis((12 - job as u64) % 4));
                Ok(b[0] * 10)
            })
            .collect::<Result<_, _>>()
            .expect("no errors");
            assert_eq!(out, (0..12).map(|i| i * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn errors_and_panics_are_reported_in_place() {
        let batches: Vec<Vec<usize>> = (0..4).map(|i| vec![i]).collect();
        let out: Vec<Result<usize, Error>> =
            Prefetch::new(batches, 2, 2, |job, _: &[usize]| match job {
                1 => Err(Error::UnknownSplit {
                    name: "x".to_owned(),
                }),
                2 => panic!("worker bug"),
                _ => Ok(job),
            })
            .collect();
        assert!(matches!(out[0], Ok(0)));
        assert!(matches!(out[1], Err(Error::UnknownSplit { .. })));
        assert!(matches!(out[2], Err(Error::WorkerPanicked { batch: 2 })));
        assert!(matches!(out[3], Ok(3)));
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let batches: Vec<Vec<usize>> = (0..1000).map(|i| vec![i]).collect();
        let mut prefetch = Prefetch::new(batches, 2, 2, |job, _: &[usize]| Ok(job));
        assert!(matches!(prefetch.next(), Some(Ok(0))));
        drop(prefetch); // joins without preparing the other 999
    }
}
