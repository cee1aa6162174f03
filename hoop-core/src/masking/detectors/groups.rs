//! Runs of digit groups ("4111 1111 1111 1111", "555-123-4567", "10.0.0.1") parsed once
//! and viewed from any group on, without copying.

use crate::masking::prefilter::{at, run_end};

pub(super) const MAX_GROUPS: usize = 8;

/// Up to eight digit groups separated by single `' '`, `'-'` or `'.'` bytes.
pub(super) struct Groups {
    pub(super) start: [usize; MAX_GROUPS],
    pub(super) end: [usize; MAX_GROUPS],
    /// `sep[k]` is the separator before group `k` (`sep[0]` is 0).
    pub(super) sep: [u8; MAX_GROUPS],
    pub(super) n: usize,
}

impl Groups {
    pub(super) const EMPTY: Groups = Groups {
        start: [0; MAX_GROUPS],
        end: [0; MAX_GROUPS],
        sep: [0; MAX_GROUPS],
        n: 0,
    };

    pub(super) fn parse(bytes: &[u8], from: usize) -> Groups {
        let mut g = Groups::EMPTY;
        g.fill(bytes, from);
        g
    }

    /// Parses the groups starting at `from` into `self` (in place: no copy of the arrays).
    pub(super) fn fill(&mut self, bytes: &[u8], from: usize) {
        let g = self;
        let mut pos = from;
        let mut sep = 0u8;
        for k in 0..MAX_GROUPS {
            let end = run_end(bytes, pos, usize::MAX, |b| b.is_ascii_digit());
            if end == pos {
                break;
            }
            if let (Some(s), Some(e), Some(p)) =
                (g.start.get_mut(k), g.end.get_mut(k), g.sep.get_mut(k))
            {
                *s = pos;
                *e = end;
                *p = sep;
            }
            g.n = k + 1;
            let next = at(bytes, end);
            if matches!(next, b' ' | b'-' | b'.') && at(bytes, end + 1).is_ascii_digit() {
                sep = next;
                pos = end + 1;
            } else {
                break;
            }
        }
    }
}

/// The groups of a [`Groups`] from group `k` on, indexed from 0.
#[derive(Clone, Copy)]
pub(super) struct View<'g> {
    g: &'g Groups,
    k: usize,
    /// Number of groups in the view.
    pub(super) n: usize,
}

impl View<'_> {
    pub(super) fn new(g: &Groups, k: usize) -> View<'_> {
        View {
            g,
            k,
            n: g.n.saturating_sub(k),
        }
    }

    pub(super) fn start(&self) -> usize {
        self.g.start.get(self.k).copied().unwrap_or(0)
    }

    pub(super) fn len(&self, j: usize) -> usize {
        let k = self.k + j;
        match (self.g.start.get(k), self.g.end.get(k)) {
            (Some(s), Some(e)) if j < self.n => e - s,
            _ => 0,
        }
    }

    pub(super) fn end(&self, j: usize) -> usize {
        self.g.end.get(self.k + j).copied().unwrap_or(0)
    }

    pub(super) fn sep(&self, j: usize) -> u8 {
        if j > 0 && j < self.n {
            self.g.sep.get(self.k + j).copied().unwrap_or(0)
        } else {
            0
        }
    }

    pub(super) fn digits<'b>(&self, bytes: &'b [u8], j: usize) -> &'b [u8] {
        let k = self.k + j;
        match (self.g.start.get(k), self.g.end.get(k)) {
            (Some(&s), Some(&e)) if j < self.n => bytes.get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }

    pub(super) fn shape(&self, lens: &[usize]) -> bool {
        self.n >= lens.len() && lens.iter().enumerate().all(|(j, &l)| self.len(j) == l)
    }
}
