//! What `thin_restore` and `thin_repair` share on their command lines:
//! `-i IN -o OUT`, `-q`, and the superblock overrides (also taken by
//! `thin_dump --repair`).

use crate::tools::cli::{
    number, parse_in_out, HasArg, InOut, Opt, ASYNC_IO, HELP, INPUT, OUTPUT, QUIET, VERSION,
};
use std::process::ExitCode;
use thin::format::superblock::{data_block_size_error, valid_data_block_size};
use thin::repair::RepairOptions;

/// `--transaction-id`, `--data-block-size`, `--nr-data-blocks`.
pub const TRANSACTION_ID: Opt = Opt::long("transaction-id", HasArg::Required, "transaction-id");
pub const DATA_BLOCK_SIZE: Opt = Opt::long("data-block-size", HasArg::Required, "data-block-size");
pub const NR_DATA_BLOCKS: Opt = Opt::long("nr-data-blocks", HasArg::Required, "nr-data-blocks");

const OPTS: &[Opt] = &[
    HELP,
    VERSION,
    QUIET,
    INPUT,
    OUTPUT,
    TRANSACTION_ID,
    DATA_BLOCK_SIZE,
    NR_DATA_BLOCKS,
    ASYNC_IO,
];

/// The files, and the superblock values to use instead of those read.
pub struct Args {
    pub io: InOut,
    pub overrides: RepairOptions,
}

/// The superblock overrides `thin_repair`, `thin_restore` and
/// `thin_dump --repair` share, by option id; other ids are left alone.
pub fn parse_override(id: &str, value: &str, o: &mut RepairOptions) -> Result<(), String> {
    match id {
        "transaction-id" => o.transaction_id = Some(number(id, value)?),
        "data-block-size" => {
            // The kernel's rule, refused before any work.
            let size: u32 = number(id, value)?;
            if !valid_data_block_size(size) {
                return Err(data_block_size_error(size));
            }
            o.data_block_size = Some(size);
        }
        "nr-data-blocks" => o.nr_data_blocks = Some(number(id, value)?),
        _ => {}
    }
    Ok(())
}

/// Parses `args` for tool `prog`; help, version and usage errors come back
/// as the exit status to end with.
pub fn parse(prog: &'static str, usage: &'static str, args: &[String]) -> Result<Args, ExitCode> {
    let mut overrides = RepairOptions::default();
    let io = parse_in_out(prog, usage, OPTS, args, |id, value| {
        parse_override(id, value, &mut overrides)
    })?;
    Ok(Args { io, overrides })
}
