//! Who is on the other end of an API connection: its process, from SO_PEERCRED, so that a
//! sandbox can follow the life of the process that asked for it (`AutoRemove`).

use plumb_core::model::Owner;

/// The peer process of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// Its pid in plumbd's PID namespace (none when it is not visible from there).
    pub pid: Option<u32>,
}

impl Peer {
    /// The peer as an [`Owner`]: its pid and start time, if it can be seen.
    pub fn owner(&self) -> Option<Owner> {
        let pid = self.pid.filter(|p| *p > 0)?;
        Some(Owner {
            pid,
            start: start_time(pid)?,
        })
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::PeerCheckedListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::PeerCheckedListener>) -> Self {
        let pid = stream
            .io()
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok());
        Peer { pid }
    }
}

/// When process `pid` started (field 22 of /proc/PID/stat, clock ticks since boot), or None
/// when there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True while `owner` runs (the same pid, started at the same time).
pub fn alive(owner: &Owner) -> bool {
    start_time(owner.pid) == Some(owner.start)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_alive_and_a_changed_start_is_not() {
        let pid = std::process::id();
        let start = super::start_time(pid).unwrap();
        assert!(super::alive(&plumb_core::model::Owner { pid, start }));
        assert!(!super::alive(&plumb_core::model::Owner {
            pid,
            start: start + 1
        }));
    }
}
