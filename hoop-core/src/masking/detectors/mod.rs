//! Exact detectors, run only around anchors found by the prefilter.
//!
//! Each detector gets the whole value's bytes and an anchor position and returns the byte
//! range of a validated match. Matches only ever contain ASCII bytes, so their bounds are
//! always UTF-8 character boundaries.

pub(crate) mod email;
mod groups;
pub(crate) mod ipv6;
pub(crate) mod numeric;
pub(crate) mod pem;
pub(crate) mod tokens;

use super::detector::Detector;

/// A validated match: `start..end` in the value's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
}

impl Hit {
    pub(crate) fn new(start: usize, end: usize, detector: Detector) -> Self {
        Hit {
            start,
            end,
            detector,
        }
    }
}
