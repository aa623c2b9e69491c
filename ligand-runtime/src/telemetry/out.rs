//! Where the line-oriented audit sinks write: a buffered writer that the audit writer
//! flushes when its queue runs empty.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::error::ProviderError;

/// Buffer size for standard output: `PIPE_BUF` on Linux, so each write to a pipe is atomic
/// and never interleaves mid-line with the log lines of other threads.
const STDOUT_BUFFER: usize = 4096;

/// Buffer size for a file of the sink's own.
const FILE_BUFFER: usize = 64 * 1024;

/// A buffered line output shared by the sink's callers, with `S`, state of the sink's own
/// that only a record being written uses (the log lines' timestamp cache), under the same
/// lock.
pub(super) struct Out<S = ()> {
    out: Mutex<Lines<S>>,
}

/// The output and the record being written: a record is composed in `line`, then handed to
/// the writer in one call, so composing costs plain appends to memory (not a dynamically
/// dispatched write per field) and a record that fails half-way never reaches the output.
struct Lines<S> {
    line: Vec<u8>,
    state: S,
    writer: BufWriter<Box<dyn Write + Send>>,
}

/// What a record usually takes; the buffer grows for a longer one and keeps its size.
const LINE_CAPACITY: usize = 512;

impl<S: Default> Out<S> {
    pub(super) fn new(out: impl Write + Send + 'static) -> Self {
        Self::with_capacity(FILE_BUFFER, out)
    }

    fn with_capacity(capacity: usize, out: impl Write + Send + 'static) -> Self {
        Self {
            out: Mutex::new(Lines {
                line: Vec::with_capacity(LINE_CAPACITY),
                state: S::default(),
                writer: BufWriter::with_capacity(capacity, Box::new(out)),
            }),
        }
    }

    /// Standard output through a descriptor of its own (a duplicate), where there is one:
    /// each batch is one `write`, without the standard library's lock and line buffering in
    /// the way, which cost several times the system call on every flush of the audit writer.
    /// A batch of whole lines gains nothing from them, and `STDOUT_BUFFER` keeps each write
    /// atomic on a pipe all the same.
    pub(super) fn stdout() -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
                return Self::with_capacity(STDOUT_BUFFER, std::fs::File::from(fd));
            }
        }
        Self::with_capacity(STDOUT_BUFFER, io::stdout())
    }

    /// Appends to the file at `path`, creating it (mode 0600 on Unix: the audit log names
    /// callers and resources) if it does not exist.
    pub(super) fn file(path: &Path) -> io::Result<Self> {
        Ok(Self::new(open(path, false)?))
    }

    /// Writes one record with `write`, which must end it with a newline; `write` also gets
    /// the sink's state.
    pub(super) fn line_with(
        &self,
        write: impl FnOnce(&mut Vec<u8>, &mut S) -> io::Result<()>,
    ) -> Result<(), ProviderError> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Lines {
            line,
            state,
            writer,
        } = &mut *out;
        line.clear();
        write(line, state)
            .and_then(|()| writer.write_all(line))
            .map_err(|e| ProviderError::backend("writing an audit record", e))
    }

    pub(super) fn flush(&self) -> Result<(), ProviderError> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .writer
            .flush()
            .map_err(|e| ProviderError::backend("flushing the audit log", e))
    }
}

impl Out {
    /// Writes one record with `write`, which must end it with a newline.
    pub(super) fn line(
        &self,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> Result<(), ProviderError> {
        self.line_with(|line, ()| write(line))
    }
}

/// Opens the file at `path` for appending (and reading, with `read`), creating it with mode
/// 0600 on Unix.
pub(super) fn open(path: &Path, read: bool) -> io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(read);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
