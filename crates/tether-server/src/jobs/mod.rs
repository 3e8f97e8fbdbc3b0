//! Background work that is not the connection service's own refresher or the webhook
//! delivery (which live with what they serve): the purge of what expired, the coherence of
//! this instance's caches with other instances' changes, and the sealing key (following the
//! one the database announces, and the rotation that re-seals under a new one).

pub(crate) mod coherence;
pub(crate) mod purge;
pub mod rotation;
pub mod sealing_key;
