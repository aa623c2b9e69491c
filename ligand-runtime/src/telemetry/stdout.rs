//! Standard output for the log: line by line from every thread, except the audit writer,
//! which gathers its lines and writes them together.
//!
//! The default audit sink emits one `tracing` event per decision, and the log subscriber
//! writes each event to standard output. Rust's standard output is line-buffered, so each
//! audit line would cost a `write` system call on the audit thread. The audit writer instead
//! marks its thread as batching: its lines collect in a buffer that is written out in one call
//! when the audit queue runs empty (so an idle service's log is current) or when the next line
//! would take the buffer past [`BATCH_LIMIT`]. Every other thread writes through at once.
//!
//! [`BATCH_LIMIT`] is `PIPE_BUF` on Linux: a write of at most that size to a pipe is atomic, so
//! a batch never interleaves mid-line with another thread's write when standard output is a
//! pipe to a log collector.

use std::cell::RefCell;
use std::io::{self, Write};

/// The largest batch written in one call.
const BATCH_LIMIT: usize = 4096;

thread_local! {
    /// This thread's pending lines; `None` on threads that write through.
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// A writer to standard output that batches on the audit writer's thread. Give
/// [`stdout_writer`] to the log subscriber (`tracing_subscriber::fmt().with_writer(..)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutWriter;

/// A [`StdoutWriter`]; as a function, it is what `tracing_subscriber`'s `with_writer` takes.
pub fn stdout_writer() -> StdoutWriter {
    StdoutWriter
}

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if batch(buf)? {
            return Ok(buf.len());
        }
        io::stdout().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if batch(buf)? {
            return Ok(());
        }
        // One log line, one call, under the lock.
        io::stdout().lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Adds `buf` to the calling thread's batch: `false` when the thread writes through (it is
/// not batching, `buf` is too long to batch, or the thread is being torn down).
fn batch(buf: &[u8]) -> io::Result<bool> {
    BATCH
        .try_with(|cell| match cell.borrow_mut().as_mut() {
            Some(batch) => push(batch, buf, &mut write_stdout),
            None => Ok(false),
        })
        .unwrap_or(Ok(false))
}

/// Adds `buf` to `batch`, first writing the batch to `out` if `buf` would take it past
/// [`BATCH_LIMIT`]; `false` (after that write) when `buf` alone is too long to batch.
fn push(
    batch: &mut Vec<u8>,
    buf: &[u8],
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    if batch.len() + buf.len() > BATCH_LIMIT && !batch.is_empty() {
        let written = out(batch);
        batch.clear();
        written?;
    }
    if buf.len() > BATCH_LIMIT {
        return Ok(false);
    }
    batch.extend_from_slice(buf);
    Ok(true)
}

/// Makes the calling thread batch its standard-output lines until [`end_batching`].
pub(crate) fn begin_batching() {
    BATCH.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| Vec::with_capacity(BATCH_LIMIT));
    });
}

/// Writes out the calling thread's pending lines.
pub(crate) fn flush_batch() {
    let _ = BATCH.try_with(|cell| {
        if let Some(batch) = cell.borrow_mut().as_mut() {
            let _ = write_out(batch);
        }
    });
}

/// Writes out the pending lines and makes the thread write through again.
pub(crate) fn end_batching() {
    flush_batch();
    let _ = BATCH.try_with(|cell| cell.borrow_mut().take());
}

/// One `write_all` of the whole batch, which then starts empty. A failed write loses the batch
/// (standard output is gone: there is nowhere to report it).
fn write_out(batch: &mut Vec<u8>) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let result = write_stdout(batch);
    batch.clear();
    result
}

fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> usize {
        BATCH.with(|cell| cell.borrow().as_ref().map_or(0, Vec::len))
    }

    #[test]
    fn a_batching_thread_holds_its_lines_until_flushed_and_other_threads_write_through() {
        std::thread::spawn(|| {
            begin_batching();
            // Empty lines: what reaches the test's standard output is only blank.
            StdoutWriter.write_all(b"\n").unwrap();
            StdoutWriter.write_all(b"\n").unwrap();
            assert_eq!(pending(), 2);
            flush_batch();
            assert_eq!(pending(), 0);
            end_batching();
            StdoutWriter.write_all(b"\n").unwrap();
            assert_eq!(pending(), 0);
        })
        .join()
        .unwrap();
        // This thread never batched.
        StdoutWriter.write_all(b"\n").unwrap();
        assert_eq!(pending(), 0);
    }

    #[test]
    fn a_batch_is_written_before_it_would_pass_the_limit() {
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut out = |bytes: &[u8]| {
            written.push(bytes.to_vec());
            Ok(())
        };
        let mut batch = Vec::new();
        let line = [b'x'; 1000];
        for _ in 0..4 {
            assert!(push(&mut batch, &line, &mut out).unwrap());
        }
        assert_eq!(batch.len(), 4000);
        assert!(push(&mut batch, &line, &mut out).unwrap());
        assert_eq!(batch.len(), 1000, "the full batch went out first");
        let long = vec![b'y'; BATCH_LIMIT + 1];
        assert!(
            !push(&mut batch, &long, &mut out).unwrap(),
            "a line past the limit is written through"
        );
        assert!(batch.is_empty(), "after what was batched before it");
        let sizes: Vec<usize> = written.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4000, 1000]);
    }
}
