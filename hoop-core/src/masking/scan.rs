//! The scan loop: prefilter to an anchor, run the detectors for that anchor, repeat.

use super::detector::{Detector, DetectorSet};
use super::detectors::{Hit, email, ipv6, numeric, pem, tokens};
use super::prefilter::{AnchorTable, at, before, run_end};

/// What the scan looks for.
#[derive(Clone, Debug)]
pub(crate) struct ScanConfig {
    pub set: DetectorSet,
    pub anchors: AnchorTable,
}

/// Finds validated matches left to right, without overlaps.
pub(crate) struct Scan<'t, 'c> {
    text: &'t str,
    cfg: &'c ScanConfig,
    ssn_bare: bool,
    /// Next byte to look at.
    pos: usize,
    /// End of the last match: no match may start before it.
    min_start: usize,
}

impl<'t, 'c> Scan<'t, 'c> {
    pub(crate) fn new(text: &'t str, cfg: &'c ScanConfig, ssn_bare: bool) -> Self {
        Scan {
            text,
            cfg,
            ssn_bare,
            pos: 0,
            min_start: 0,
        }
    }

    /// Runs the detectors for the anchor byte `b` at `i`; returns a match or where to
    /// continue scanning.
    fn at_anchor(&self, i: usize, b: u8) -> Result<Hit, usize> {
        let bytes = self.text.as_bytes();
        let set = self.cfg.set;
        let min = self.min_start;
        let found = match b {
            b'0'..=b'9' => {
                let run = run_end(bytes, i, usize::MAX, |b| b.is_ascii_digit());
                if before(bytes, i).is_ascii_digit() {
                    return Err(run);
                }
                let o = numeric::NumericOpts {
                    set,
                    ssn_bare: self.ssn_bare,
                };
                return numeric::detect(bytes, i, o, min).ok_or(run);
            }
            b'@' => email::detect(bytes, i, min),
            b':' => set
                .contains(Detector::Ipv6)
                .then(|| ipv6::detect(self.text, i, min))
                .flatten()
                .or_else(|| {
                    set.contains(Detector::AwsKey)
                        .then(|| tokens::aws_secret_key(bytes, i, min))
                        .flatten()
                }),
            b'=' => tokens::aws_secret_key(bytes, i, min),
            b'I' => tokens::aws_access_key(bytes, i, min),
            b'J' => tokens::jwt(bytes, i, min),
            b'_' => tokens::github(bytes, i, min),
            b'/' => tokens::slack_webhook(bytes, i, min),
            b'-' => {
                let pem = (set.contains(Detector::PrivateKey) && at(bytes, i + 1) == b'-')
                    .then(|| pem::detect(bytes, i, min))
                    .flatten();
                pem.or_else(|| {
                    set.contains(Detector::SlackToken)
                        .then(|| tokens::slack_token(bytes, i, min))
                        .flatten()
                })
            }
            _ => None,
        };
        found.ok_or(i + 1)
    }
}

impl Iterator for Scan<'_, '_> {
    type Item = Hit;

    fn next(&mut self) -> Option<Hit> {
        let bytes = self.text.as_bytes();
        loop {
            let i = self.cfg.anchors.next(bytes, self.pos)?;
            let b = at(bytes, i);
            match self.at_anchor(i, b) {
                Ok(hit) if hit.start >= self.min_start && hit.end > hit.start => {
                    self.pos = hit.end;
                    self.min_start = hit.end;
                    return Some(hit);
                }
                Ok(_) => self.pos = i + 1,
                Err(next) => self.pos = next.max(i + 1),
            }
        }
    }
}
