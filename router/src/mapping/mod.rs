//! Port mappings for UPnP IGD, NAT-PMP and PCP: the table, its leases and its policy.
//!
//! Sans-IO, like the NAT engine: every call takes `now: Instant`, nothing here reads a clock
//! or opens a socket (one documented exception: [`persist::write_atomic`]). The shell's loop:
//!
//! 1. parse a request with `shared` ([`shared::soap`] + [`shared::igd`], or
//!    [`shared::natpmp`]);
//! 2. call the matching [`MappingTable`] operation with `now` and the caller's address;
//! 3. answer with the result, or the error's [`TableError::upnp_error`] /
//!    [`TableError::natpmp_result`] / [`TableError::pcp_result`];
//! 4. drain [`MappingTable::take_changes`] and apply each [`Change`] to the NAT in order
//!    (`add_forward` / `remove_forward`), emit GENA events when the number of entries or
//!    [`MappingTable::system_update_id`] changed, and save the table ([`persist`]);
//! 5. sleep until [`MappingTable::next_deadline`], then [`MappingTable::expire`] and go to 4.
//!
//! Modules: [`table`] (the mapping table and its rules), [`policy`] (permission rules),
//! [`persist`] (state file).

pub mod persist;
pub mod policy;
pub mod table;

pub use policy::{Rule, RuleError, Rules, Verdict};
pub use table::{
    AddRequest, Change, Mapping, MappingTable, Origin, PmpGrant, PmpRequest, RemoveReason,
    TableConfig, TableError,
};

#[cfg(test)]
mod tests;
