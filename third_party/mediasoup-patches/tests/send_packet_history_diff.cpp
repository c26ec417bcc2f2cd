// Differential test of patch 0001 (SendPacketHistory on a ring of slots instead
// of a std::map): drives upstream's SendPacketHistory and the patched one with
// the same long random sequence of calls, shaped like a transport's life
// (packets taken note of, leaving, transport-cc feedback reporting them in
// order with some lost and some reported again, retransmissions reusing an
// SSRC and RTP sequence number, untracked bytes, the window dropping old
// packets, now and then an unwrap far away), and requires every answer of the
// two to be the same, field by field. Built and run by
// scripts/test-worker-patches.sh; exits non-zero at the first difference.
//
// The upstream copy is compiled with -DSendPacketHistory=UpstreamSendPacketHistory
// so that both classes live in one program.
#include "common.hpp"

#define SendPacketHistory UpstreamSendPacketHistory
#include UPSTREAM_SEND_PACKET_HISTORY_HPP
#undef SendPacketHistory
#undef MS_RTC_BWE_SEND_PACKET_HISTORY_HPP
#include "RTC/BWE/SendPacketHistory.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

using Patched  = RTC::BWE::SendPacketHistory;
using Upstream = RTC::BWE::UpstreamSendPacketHistory;

static uint64_t checks{ 0 };

[[noreturn]] static void Fail(const std::string& what, uint64_t seed, uint64_t step)
{
	std::fprintf(stderr, "DIFFERENT: %s (seed %" PRIu64 ", step %" PRIu64 ")\n", what.c_str(), seed, step);
	std::exit(1);
}

#define SAME(a, b, what) \
	do \
	{ \
		++checks; \
		if ((a) != (b)) \
		{ \
			Fail(std::string(what) + ": upstream " + std::to_string(a) + ", patched " + std::to_string(b), seed, step); \
		} \
	} while (false)

template<typename A, typename B>
static void SameSentPacket(const A& a, const B& b, uint64_t seed, uint64_t step)
{
	SAME(a.sequenceNumber, b.sequenceNumber, "sequenceNumber");
	SAME(a.sendTimeUs, b.sendTimeUs, "sendTimeUs");
	SAME(a.size, b.size, "size");
	SAME(a.priorUnackedData, b.priorUnackedData, "priorUnackedData");
	SAME(a.dataInFlight, b.dataInFlight, "dataInFlight");
	SAME(a.isAudio, b.isAudio, "isAudio");
	SAME(a.probeCluster.has_value(), b.probeCluster.has_value(), "probeCluster");
	if (a.probeCluster.has_value())
	{
		SAME(a.probeCluster->id, b.probeCluster->id, "probeCluster.id");
	}
}

template<typename A, typename B>
static void SameEntry(const A& a, const B& b, uint64_t seed, uint64_t step)
{
	SAME(a.has_value(), b.has_value(), "entry held");
	if (!a.has_value())
	{
		return;
	}
	SameSentPacket(a->sentPacket, b->sentPacket, seed, step);
	SAME(a->createdAtUs, b->createdAtUs, "createdAtUs");
	SAME(a->ssrc, b->ssrc, "ssrc");
	SAME(a->seq, b->seq, "seq");
	SAME(a->isRetransmission, b->isRetransmission, "isRetransmission");
	SAME(a->ambiguousReceiveTime, b->ambiguousReceiveTime, "ambiguousReceiveTime");
	SAME(a->sentWithEct1, b->sentWithEct1, "sentWithEct1");
	SAME(a->previouslyReportedLost, b->previouslyReportedLost, "previouslyReportedLost");
}

static void Run(uint64_t seed, uint64_t steps)
{
	std::mt19937_64 rng(seed);
	auto chance = [&rng](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
	auto between = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };

	// A short window, so that packets fall out of it often.
	const int64_t windowUs = between(200, 3000) * 1000;
	Upstream upstream({ .windowDurationUs = windowUs });
	Patched patched({ .windowDurationUs = windowUs });

	int64_t nowUs{ 1000000000 };
	uint16_t rtpSeq[3]{ 100, 30000, 65500 };
	const uint32_t ssrcs[3]{ 1111, 2222, 3333 };
	std::vector<int64_t> added;   // sequence numbers handed out, in order
	size_t nextToSend{ 0 };       // index into added
	size_t nextToReport{ 0 };     // index into added
	const double lossRate = std::uniform_real_distribution<double>(0, 0.3)(rng);

	for (uint64_t step = 0; step < steps; ++step)
	{
		nowUs += between(0, 4000);
		const int op = static_cast<int>(between(0, 99));

		if (op < 40)
		{
			// A packet taken note of: new, or the same SSRC and RTP seq again.
			const int s    = static_cast<int>(between(0, 2));
			const bool dup = chance(0.05);
			if (!dup)
			{
				++rtpSeq[s];
			}
			Patched::AddPacketOptions po{ .ssrc = ssrcs[s],
				                            .seq  = static_cast<uint16_t>(rtpSeq[s] - (dup ? between(0, 3) : 0)),
				                            .size = static_cast<size_t>(between(50, 1300)),
				                            .isAudio          = s == 0,
				                            .isRetransmission = dup && chance(0.8),
				                            .sentWithEct1     = chance(0.1),
				                            .createdAtUs      = nowUs };
			if (po.isRetransmission && chance(0.5))
			{
				po.originalSsrc = chance(0.5) ? po.ssrc : ssrcs[(s + 1) % 3];
			}
			if (chance(0.05))
			{
				po.probeCluster = RTC::BWE::Types::ProbeCluster{ .id = between(1, 100) };
			}
			Upstream::AddPacketOptions uo{ .ssrc             = po.ssrc,
				                             .seq              = po.seq,
				                             .size             = po.size,
				                             .isAudio          = po.isAudio,
				                             .isRetransmission = po.isRetransmission,
				                             .originalSsrc     = po.originalSsrc,
				                             .sentWithEct1     = po.sentWithEct1,
				                             .probeCluster     = po.probeCluster,
				                             .createdAtUs      = po.createdAtUs };
			const int64_t a = upstream.AddPacket(uo);
			const int64_t b = patched.AddPacket(po);
			SAME(a, b, "AddPacket");
			added.push_back(a);
		}
		else if (op < 70)
		{
			// Packets leave, mostly in order, sometimes one twice or a stale one.
			int64_t seq;
			if (nextToSend < added.size() && !chance(0.05))
			{
				seq = added[nextToSend++];
			}
			else
			{
				seq = added.empty() ? between(-2, 2) : added.back() - between(-2, 40);
			}
			const auto a = upstream.ProcessSentPacket(seq, nowUs);
			const auto b = patched.ProcessSentPacket(seq, nowUs);
			SAME(a.has_value(), b.has_value(), "ProcessSentPacket held");
			if (a.has_value())
			{
				SameSentPacket(*a, *b, seed, step);
			}
		}
		else if (op < 73)
		{
			const auto size = static_cast<size_t>(between(20, 200));
			upstream.ProcessSentUntrackedPacket(size, nowUs);
			patched.ProcessSentUntrackedPacket(size, nowUs);
		}
		else if (op < 95)
		{
			// A transport-cc feedback: the next few packets in order, some lost,
			// now and then one reported again or out of order.
			const int64_t count = between(1, 12);
			for (int64_t i = 0; i < count; ++i)
			{
				int64_t seq;
				if (nextToReport < nextToSend && !chance(0.05))
				{
					seq = added[nextToReport++];
				}
				else if (!added.empty())
				{
					seq = added[static_cast<size_t>(between(0, static_cast<int64_t>(added.size()) - 1))];
				}
				else
				{
					seq = between(-1, 3);
				}
				const bool received = !chance(lossRate);
				if (chance(0.1))
				{
					// RFC 8888 style: by SSRC and RTP sequence number.
					const int s   = static_cast<int>(between(0, 2));
					const auto rs = static_cast<uint16_t>(rtpSeq[s] - between(0, 30));
					SameEntry(upstream.RetrievePacket(ssrcs[s], rs, received), patched.RetrievePacket(ssrcs[s], rs, received), seed, step);
				}
				else
				{
					SameEntry(upstream.RetrievePacket(seq, received), patched.RetrievePacket(seq, received), seed, step);
				}
			}
		}
		else if (op < 99)
		{
			const auto wrapped = static_cast<uint16_t>((added.empty() ? 0 : added.back()) - between(0, 200));
			SAME(upstream.UnwrapSequenceNumber(wrapped), patched.UnwrapSequenceNumber(wrapped), "UnwrapSequenceNumber");
		}
		else if (chance(0.02))
		{
			// Rare: far away, which moves the numbering of later packets.
			const auto wrapped = static_cast<uint16_t>(between(0, 65535));
			SAME(upstream.UnwrapSequenceNumber(wrapped), patched.UnwrapSequenceNumber(wrapped), "UnwrapSequenceNumber (far)");
		}
		else if (chance(0.3))
		{
			// A pause longer than the window.
			nowUs += windowUs + between(0, 100000);
		}

		SAME(upstream.GetOutstandingBytes(), patched.GetOutstandingBytes(), "GetOutstandingBytes");
	}
}

int main(int argc, char* argv[])
{
	const uint64_t seeds = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200;
	const uint64_t steps = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20000;
	for (uint64_t seed = 1; seed <= seeds; ++seed)
	{
		Run(seed, steps);
	}
	std::printf("send_packet_history_diff: %" PRIu64 " seeds x %" PRIu64 " calls, %" PRIu64 " comparisons, all the same\n", seeds, steps, checks);
	return 0;
}
