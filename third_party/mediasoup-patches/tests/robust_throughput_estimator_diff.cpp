// Differential test of patch 0003 (RobustThroughputEstimator keeping what
// GetBitrate() needs up to date instead of walking the window twice at every
// feedback): drives upstream's RobustThroughputEstimator and the patched one
// with the same long random sequence of transport-cc feedbacks and requires the
// two to give the same estimate after every one of them. The feedbacks are
// shaped like a transport's: packets sent in order at a random rate with some
// jitter and bursts, arrivals sorted within a feedback (lost packets and packets
// without a send time among them), now and then arrivals earlier than the
// previous feedback's (reordering across feedbacks), packets sent long before
// the others, pauses, and arrival clock jumps that make the window start over.
// Options are random within what the constructor accepts. Built and run by
// scripts/test-worker-patches.py; exits non-zero at the first difference.
//
// The upstream copy is compiled with
// -DRobustThroughputEstimator=UpstreamRobustThroughputEstimator so that both
// classes live in one program.
#include "common.hpp"

#define RobustThroughputEstimator UpstreamRobustThroughputEstimator
#include UPSTREAM_ROBUST_THROUGHPUT_ESTIMATOR_HPP
#undef RobustThroughputEstimator
#undef MS_RTC_BWE_ROBUST_THROUGHPUT_ESTIMATOR_HPP
#include "RTC/BWE/RobustThroughputEstimator.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

using Patched  = RTC::BWE::RobustThroughputEstimator;
using Upstream = RTC::BWE::UpstreamRobustThroughputEstimator;
using RTC::BWE::Types::PacketResult;

static uint64_t checks{ 0 };
static uint64_t estimates{ 0 };

static std::string Show(const std::optional<int64_t>& v)
{
	return v.has_value() ? std::to_string(v.value()) : "none";
}

static void Run(uint64_t seed, uint64_t feedbacks)
{
	std::mt19937_64 rng(seed);
	auto chance = [&rng](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
	auto between = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };

	Patched::RobustThroughputEstimatorOptions options;
	options.windowPackets       = static_cast<size_t>(between(10, chance(0.5) ? 40 : 1000));
	options.maxWindowPackets    = static_cast<size_t>(between(static_cast<int64_t>(options.windowPackets), 1000));
	options.requiredPackets     = static_cast<size_t>(between(10, static_cast<int64_t>(options.windowPackets)));
	options.minWindowDurationUs = between(100, 3000) * 1000;
	options.maxWindowDurationUs = between(std::max<int64_t>(1000, options.minWindowDurationUs / 1000), 15000) * 1000;
	options.unackedWeight       = chance(0.3) ? 1.0 : (chance(0.3) ? 0.0 : std::uniform_real_distribution<double>(0, 1)(rng));

	Upstream::RobustThroughputEstimatorOptions upstreamOptions;
	upstreamOptions.windowPackets       = options.windowPackets;
	upstreamOptions.maxWindowPackets    = options.maxWindowPackets;
	upstreamOptions.requiredPackets     = options.requiredPackets;
	upstreamOptions.minWindowDurationUs = options.minWindowDurationUs;
	upstreamOptions.maxWindowDurationUs = options.maxWindowDurationUs;
	upstreamOptions.unackedWeight       = options.unackedWeight;

	Upstream upstream(upstreamOptions);
	Patched patched(options);

	// How this transport sends and how its path behaves.
	const int64_t meanIntervalUs = between(200, 30000);
	const double lossRate        = chance(0.5) ? 0.0 : std::uniform_real_distribution<double>(0, 0.3)(rng);
	const double reorderRate     = chance(0.3) ? 0.0 : std::uniform_real_distribution<double>(0, 0.2)(rng);
	const int64_t jitterUs       = between(0, 20000);
	int64_t sendTimeUs{ 5000000 };
	int64_t clockOffsetUs{ between(-1000000, 1000000) };
	int64_t lastArrivalUs{ 0 };
	int64_t sequenceNumber{ 0 };

	for (uint64_t feedback = 0; feedback < feedbacks; ++feedback)
	{
		std::vector<PacketResult> packetResults;
		const int64_t count = between(0, chance(0.1) ? 60 : 15);

		if (chance(0.01))
		{
			// A pause, longer than some windows.
			sendTimeUs += between(100000, 6000000);
		}
		if (chance(0.005))
		{
			// The remote clock moves, which the window must survive.
			clockOffsetUs += between(-3000000, 3000000);
		}

		for (int64_t i = 0; i < count; ++i)
		{
			PacketResult packetResult;

			sendTimeUs += chance(0.3) ? between(0, 50) : between(0, 2 * meanIntervalUs);
			packetResult.sentPacket.sequenceNumber = ++sequenceNumber;
			packetResult.sentPacket.sendTimeUs     = sendTimeUs;
			packetResult.sentPacket.size           = static_cast<size_t>(between(30, 1300));
			packetResult.sentPacket.priorUnackedData =
			  chance(0.2) ? static_cast<size_t>(between(0, 5000)) : 0;

			if (chance(0.01))
			{
				// Sent long before the others (a retransmission that took its time).
				packetResult.sentPacket.sendTimeUs -= between(0, 2000000);
			}
			if (chance(0.002))
			{
				packetResult.sentPacket.sendTimeUs = RTC::BWE::Types::TimeUsInfinite;
			}

			if (!chance(lossRate))
			{
				int64_t arrivalUs = sendTimeUs + clockOffsetUs + between(0, jitterUs);

				if (chance(reorderRate))
				{
					// Earlier than what the previous feedback reported.
					arrivalUs = lastArrivalUs - between(0, chance(0.05) ? 1500000 : 50000);
				}
				if (chance(0.2))
				{
					// Same arrival time as the one before (a burst).
					arrivalUs = packetResults.empty() || !packetResults.back().receiveTimeUs.has_value()
					              ? arrivalUs
					              : packetResults.back().receiveTimeUs.value();
				}

				packetResult.receiveTimeUs = arrivalUs;
			}

			packetResults.push_back(packetResult);
		}

		std::ranges::sort(packetResults, PacketResult::ReceiveTimeOrder());

		for (const auto& packetResult : packetResults)
		{
			if (packetResult.receiveTimeUs.has_value())
			{
				lastArrivalUs = std::max(lastArrivalUs, packetResult.receiveTimeUs.value());
			}
		}

		upstream.IncomingPacketFeedbackVector(packetResults);
		patched.IncomingPacketFeedbackVector(packetResults);

		const auto a = upstream.GetBitrate();
		const auto b = patched.GetBitrate();

		++checks;
		if (a.has_value())
		{
			++estimates;
		}
		if (a != b)
		{
			std::fprintf(
			  stderr,
			  "DIFFERENT: GetBitrate: upstream %s, patched %s (seed %" PRIu64 ", feedback %" PRIu64 ")\n",
			  Show(a).c_str(),
			  Show(b).c_str(),
			  seed,
			  feedback);
			std::exit(1);
		}
	}
}

int main(int argc, char* argv[])
{
	const uint64_t seeds     = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 300;
	const uint64_t feedbacks = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 5000;
	for (uint64_t seed = 1; seed <= seeds; ++seed)
	{
		Run(seed, feedbacks);
	}
	std::printf(
	  "robust_throughput_estimator_diff: %" PRIu64 " seeds x %" PRIu64 " feedbacks, %" PRIu64
	  " estimates compared (%" PRIu64 " of them a rate), all the same\n",
	  seeds,
	  feedbacks,
	  checks,
	  estimates);
	return 0;
}
