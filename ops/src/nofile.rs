//! The open-file limit: both servers raise their soft limit to the hard one
//! at start ([`raise`]), before anything is bound, and say in the log what
//! they got and whether it is lower than what their configuration needs
//! ([`Nofile::log`]). A coordinator holds one descriptor per browser socket
//! (waiting in the join queue or connected); a media node's workers are
//! threads of its process, and each ICE-TCP connection is one descriptor.
//! Systemd and most container runtimes give a soft limit of 1024 and a much
//! higher hard limit: without this, a coordinator stops accepting at about
//! a thousand browsers.

/// The open-file limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// Soft limit at start.
    pub before: u64,
    /// Soft limit now.
    pub now: u64,
    /// Hard limit (the most an unprivileged process may set).
    pub hard: u64,
}

fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 {
        Ok(lim)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft open-file limit to the hard limit.
pub fn raise() -> std::io::Result<Nofile> {
    let lim = get()?;
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; it changes only this
        // process's limit (children inherit it).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let now = get()?;
    Ok(Nofile {
        before: before as u64,
        now: now.rlim_cur as u64,
        hard: now.rlim_max as u64,
    })
}

impl Nofile {
    /// Whether `need` descriptors fit.
    pub fn enough_for(&self, need: u64) -> bool {
        self.now >= need
    }

    /// Logs what [`raise`] did, and a warning when the limit is lower than
    /// `need` (`what`: what the configuration needs them for).
    pub fn log(&self, need: u64, what: &str) {
        if self.now > self.before {
            tracing::info!(
                before = self.before,
                now = self.now,
                "open files limit raised to the hard limit"
            );
        } else {
            tracing::info!(
                limit = self.now,
                "open files limit (already the hard limit)"
            );
        }
        if !self.enough_for(need) {
            tracing::warn!(
                limit = self.now,
                need,
                "open files limit is lower than the configuration needs ({what}); raise the hard limit (ulimit -Hn, LimitNOFILE=, the container runtime's nofile ulimit)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise().unwrap();
        assert_eq!(first.now, first.hard);
        assert!(first.now >= first.before);
        let again = raise().unwrap();
        assert_eq!(again.before, again.now);
        assert_eq!(again.now, first.now);
        assert!(again.enough_for(again.now));
        assert!(!again.enough_for(again.now + 1));
    }
}
