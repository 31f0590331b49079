//! A process-wide tracing subscriber at TRACE that writes every event (with
//! the fields of its spans) and every span open/close into one buffer.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The captured log text of the whole test binary.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything captured so far, lossily decoded.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// One writer handed out per event; appends to the shared buffer.
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

/// Installs (once per test binary) a global TRACE subscriber writing into the
/// returned buffer. Events of the sandbox (the *server* side) are left out:
/// this suite judges what the clients log.
pub fn capture() -> LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let filter = tracing_subscriber::EnvFilter::new("trace,sandbox=off");
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(buffer.clone())
                .with_ansi(false)
                .with_span_events(FmtSpan::FULL)
                .with_target(true)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            buffer
        })
        .clone()
}
