//! [`TeeRecorder`]: one session, several recordings (e.g. JSONL audit + asciicast replay).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Event, RecordError, Recorder, Recording, SessionMeta};

/// Fans every session out to several recorders.
///
/// Opening fails if any recorder refuses (those already opened are finished with the
/// reason `recording refused`). `record` gives every event to every recording and
/// returns the first error; `finish` finishes them all and returns the first error.
#[derive(Clone, Default)]
pub struct TeeRecorder {
    recorders: Vec<Arc<dyn Recorder>>,
}

impl std::fmt::Debug for TeeRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeRecorder")
            .field("recorders", &self.recorders.len())
            .finish()
    }
}

impl TeeRecorder {
    /// A tee with no recorder (records nothing until [`with`](Self::with) is called).
    pub fn new() -> Self {
        TeeRecorder::default()
    }

    /// Adds a recorder.
    pub fn with(mut self, recorder: impl Recorder + 'static) -> Self {
        self.recorders.push(Arc::new(recorder));
        self
    }

    /// Adds a shared recorder.
    pub fn with_shared(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorders.push(recorder);
        self
    }
}

#[async_trait]
impl Recorder for TeeRecorder {
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        let mut opened: Vec<Box<dyn Recording>> = Vec::with_capacity(self.recorders.len());
        for r in &self.recorders {
            match r.open(meta).await {
                Ok(rec) => opened.push(rec),
                Err(e) => {
                    for rec in opened {
                        let _ = rec.finish("recording refused").await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Box::new(TeeRecording { all: opened }))
    }
}

struct TeeRecording {
    all: Vec<Box<dyn Recording>>,
}

#[async_trait]
impl Recording for TeeRecording {
    fn record(&self, event: Event) -> Result<(), RecordError> {
        let mut result = Ok(());
        if let Some((last, rest)) = self.all.split_last() {
            for r in rest {
                if let Err(e) = r.record(event.clone()) {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
            if let Err(e) = last.record(event) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    async fn record_async(&self, event: Event) -> Result<(), RecordError> {
        let mut result = Ok(());
        for r in &self.all {
            if let Err(e) = r.record_async(event.clone()).await
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        let mut result = Ok(());
        for r in self.all {
            if let Err(e) = r.finish(reason).await {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}
