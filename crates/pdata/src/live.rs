//! What every client's live metadata (thin, cache, era) does around an
//! operation: refuse a change when the metadata is read-only or the
//! transaction is dead, and kill the transaction when a change fails
//! part-way (every later call then fails until `abort`).

use crate::transaction_manager::TransactionManager;
use crate::{Error, Result};

pub trait LiveMetadata {
    fn live_tm(&self) -> &TransactionManager;
    fn live_tm_mut(&mut self) -> &mut TransactionManager;

    /// Before a change: writable, and the transaction alive.
    fn require_writable(&self) -> Result<()> {
        if !self.live_tm().bm().is_writable() {
            return Err(Error::ReadOnly);
        }
        self.live_tm().check_alive()
    }

    /// Runs a changing step: refuses if the transaction is dead, and kills
    /// it if the step fails.
    fn mutate<T, E>(
        &mut self,
        f: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        Self: Sized,
        E: From<Error> + std::fmt::Display,
    {
        self.live_tm().check_alive()?;
        let r = f(self);
        if let Err(e) = &r {
            self.live_tm_mut()
                .poison(format!("a metadata operation failed: {e}"));
        }
        r
    }
}
