//! What the copy-on-write structures need of a transaction: the narrow
//! interface between the B-trees, arrays, bitsets and space maps above and
//! the transaction manager, which implements it.
//!
//! It sits below the structures so that they never name the transaction
//! manager: the transaction manager owns the metadata space map, which
//! writes itself out through B-trees, so naming it from below would close a
//! loop. The structures take `&mut (impl TransactionOps + ?Sized)`, which
//! compiles to the same code as before for a `&mut TransactionManager`;
//! value types, called through `dyn ValueType`, get a `&mut dyn
//! TransactionOps` ([`AsDynOps::as_dyn`]).

use crate::block_manager::{BlockRead, Validator, WriteRef};
use crate::Result;

/// Block operations inside a transaction. Reading (`BlockRead`) fails once
/// the transaction is dead, like every other operation.
pub trait TransactionOps: BlockRead + AsDynOps {
    /// A new zeroed block, write-locked, counted once.
    fn new_block(&mut self, v: &'static dyn Validator) -> Result<WriteRef>;

    /// Makes `orig` writable in this transaction. Returns the block to write
    /// (a copy unless `orig` is already this transaction's own and unshared)
    /// and whether the copy shares `orig`'s children, which the caller must
    /// then count once more.
    fn shadow(&mut self, orig: u64, v: &'static dyn Validator) -> Result<(WriteRef, bool)>;

    /// Write-locks a block already shadowed in this transaction.
    fn write_lock_shadowed(&mut self, loc: u64, v: &'static dyn Validator) -> Result<WriteRef>;

    /// True when `loc` was allocated or copied in this transaction.
    fn is_shadowed(&self, loc: u64) -> bool;

    /// Adds one reference to metadata block `b`.
    fn inc(&mut self, b: u64) -> Result<()>;

    /// Drops one reference to metadata block `b`.
    fn dec(&mut self, b: u64) -> Result<()>;

    /// The current reference count of metadata block `b`.
    fn ref_count(&self, b: u64) -> Result<u32>;

    /// True when more than one reference holds `b`.
    fn is_shared(&self, b: u64) -> Result<bool> {
        Ok(self.ref_count(b)? > 1)
    }
}

/// Turns any `TransactionOps` (sized or already `dyn`) into a trait object,
/// which generic code over `T: ?Sized` cannot do by coercion.
pub trait AsDynOps {
    fn as_dyn(&mut self) -> &mut dyn TransactionOps;
}

impl<T: TransactionOps> AsDynOps for T {
    fn as_dyn(&mut self) -> &mut dyn TransactionOps {
        self
    }
}
