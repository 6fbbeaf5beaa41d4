//! What every client's live metadata (thin, cache, era) does around an
//! operation: refuse a change when the metadata is read-only or the
//! transaction is dead, and kill the transaction when a change fails
//! part-way (every later call then fails until `abort`).

use crate::transaction_manager::TransactionManager;
use crate::{Error, Result};

pub trait LiveMetadata {
    fn transaction_manager(&self) -> &TransactionManager;

    /// Test-only access for fault injection.
    #[doc(hidden)]
    fn transaction_manager_mut(&mut self) -> &mut TransactionManager;

    /// Test-only: the kernel's pre-fix commit (the torture harness's seed
    /// bug).
    #[doc(hidden)]
    fn enable_seed_bug_mutation(&mut self) {
        self.transaction_manager_mut().enable_seed_bug_mutation();
    }

    fn is_writable(&self) -> bool {
        self.transaction_manager().bm().is_writable()
    }

    /// Before a change: writable, and the transaction alive.
    fn require_writable(&self) -> Result<()> {
        if !self.transaction_manager().bm().is_writable() {
            return Err(Error::ReadOnly);
        }
        self.transaction_manager().check_alive()
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
        self.transaction_manager().check_alive()?;
        let r = f(self);
        if let Err(e) = &r {
            self.transaction_manager_mut()
                .poison(format!("a metadata operation failed: {e}"));
        }
        r
    }
}
