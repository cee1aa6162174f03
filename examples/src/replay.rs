//! Reading recordings back (filled in below).
