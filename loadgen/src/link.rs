//! What a receiver's network does to the datagrams that reach it, for tests of
//! the worker's send path (`loadgen/tests/worker_path.rs`): a bottleneck (a
//! link of a given rate whose queue holds at most a given delay; what arrives
//! beyond that is dropped, as a router's tail drop does) and a loss pattern
//! (every Nth RTP packet of one payload type is lost; retransmissions, on
//! their own payload type, are not).
//!
//! Only RTP and RTCP are impaired: STUN and DTLS pass, so the connection is set
//! up and kept alive as on a good network.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to do to arriving RTP and RTCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// The link's rate, bits per second (None: no bottleneck).
    pub bottleneck_bps: Option<u64>,
    /// The longest a datagram may wait in the bottleneck's queue.
    pub max_queue: Duration,
    /// Lose every `n`th RTP packet of payload type `pt`: `(pt, n)`.
    pub drop_every: Option<(u8, u32)>,
}

/// What became of an arriving datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Hand it over now.
    Now,
    /// Held in the bottleneck's queue ([`Link::pop_due`] gives it back).
    Queued,
    /// Lost.
    Dropped,
}

/// One receiver's incoming link.
#[derive(Debug, Default)]
pub struct Link {
    imp: Impairment,
    busy_until: Option<Instant>,
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    matching: u64,
    /// Datagrams lost so far (pattern and tail drop).
    pub dropped: u64,
}

/// RTP or RTCP (RFC 7983: first byte 128..=191).
fn is_rtp_or_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (128..=191).contains(&data[0])
}

impl Link {
    /// A link doing `imp`.
    pub fn new(imp: Impairment) -> Self {
        Self {
            imp,
            ..Default::default()
        }
    }

    /// Takes a datagram arriving at `now`; [`Arrival::Queued`] keeps a copy.
    pub fn arrive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> Arrival {
        if !is_rtp_or_rtcp(data) {
            return Arrival::Now;
        }
        if let Some((pt, n)) = self.imp.drop_every {
            // RTCP packet types 192..=223 share the second byte's range with
            // RTP's marker bit and payload type; ours never collide with them.
            let b1 = data[1];
            if b1 & 0x7f == pt && !(192..=223).contains(&b1) {
                self.matching += 1;
                if self.matching.is_multiple_of(u64::from(n)) {
                    self.dropped += 1;
                    return Arrival::Dropped;
                }
            }
        }
        let Some(bps) = self.imp.bottleneck_bps else {
            return Arrival::Now;
        };
        // Serialisation at the link's rate, after what is already queued.
        let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
        if start.duration_since(now) > self.imp.max_queue {
            self.dropped += 1;
            return Arrival::Dropped;
        }
        let on_wire = Duration::from_secs_f64(data.len() as f64 * 8.0 / bps as f64);
        let done = start + on_wire;
        self.busy_until = Some(done);
        self.queue.push_back((done, source, data.to_vec()));
        Arrival::Queued
    }

    /// When the next queued datagram is through the link.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _, _)| *at)
    }

    /// The next datagram through the link by `now`, with the time it got through.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, SocketAddr, Vec<u8>)> {
        if self.next_due()? <= now {
            self.queue.pop_front()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8) -> Vec<u8> {
        let mut d = vec![0u8; 100];
        d[0] = 0x80;
        d[1] = pt;
        d
    }

    #[test]
    fn drops_every_nth_packet_of_one_payload_type_only() {
        let mut l = Link::new(Impairment {
            drop_every: Some((96, 3)),
            ..Default::default()
        });
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        let got: Vec<Arrival> = (0..6).map(|_| l.arrive(now, src, &rtp(96))).collect();
        assert_eq!(got.iter().filter(|a| **a == Arrival::Dropped).count(), 2);
        assert_eq!(l.arrive(now, src, &rtp(97)), Arrival::Now);
        assert_eq!(l.arrive(now, src, &rtp(96 | 0x80)), Arrival::Now);
        // STUN passes whatever the pattern.
        assert_eq!(l.arrive(now, src, &[0, 1, 0, 0]), Arrival::Now);
    }

    #[test]
    fn a_bottleneck_delays_at_its_rate_and_drops_beyond_its_queue() {
        // 100 bytes at 8000 bit/s: 100 ms each; the queue holds 250 ms.
        let mut l = Link::new(Impairment {
            bottleneck_bps: Some(8000),
            max_queue: Duration::from_millis(250),
            ..Default::default()
        });
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        let got: Vec<Arrival> = (0..5).map(|_| l.arrive(now, src, &rtp(96))).collect();
        assert_eq!(
            got,
            [
                Arrival::Queued,
                Arrival::Queued,
                Arrival::Queued,
                Arrival::Dropped,
                Arrival::Dropped
            ]
        );
        assert_eq!(l.next_due(), Some(now + Duration::from_millis(100)));
        assert!(l.pop_due(now).is_none());
        let (at, _, _) = l.pop_due(now + Duration::from_millis(100)).unwrap();
        assert_eq!(at, now + Duration::from_millis(100));
        assert_eq!(l.dropped, 2);
    }
}
