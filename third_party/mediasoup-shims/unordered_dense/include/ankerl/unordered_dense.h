// Throng stand-in for ankerl::unordered_dense (martinus/unordered_dense 5.x),
// which no package registry ships. mediasoup uses only `map`, `set` and `hash`
// with the standard container interface. They are provided here on top of
// abseil's Swiss tables (absl::flat_hash_map / flat_hash_set, Debian package
// libabsl-dev): open addressing in one flat array, like unordered_dense, where
// std::unordered_map walks a linked bucket per lookup (BENCHMARKS.md, figure 2).
//
// Differences, none of which mediasoup relies on (its upstream container gives
// neither stable references across inserts nor any iteration order):
// - iteration order;
// - erase keeps every other element where it is (unordered_dense moves the
//   last element into the hole), so references to other elements stay valid.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

namespace ankerl::unordered_dense
{
	namespace detail
	{
		// unordered_dense's integer hash: the 128-bit product of the value and a
		// 64-bit odd constant, folded. Every input bit reaches the high and low
		// bits the Swiss table uses (std::hash<integer> is the identity).
		inline uint64_t Mix(uint64_t value) noexcept
		{
			const __uint128_t product =
			  static_cast<__uint128_t>(value) * UINT64_C(0x9E3779B97F4A7C15);

			return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
		}

		template<class T>
		inline constexpr bool IsMixed =
		  std::is_integral_v<T> || std::is_enum_v<T> || std::is_pointer_v<T>;
	} // namespace detail

	// Strings and other types: the standard library's hash.
	template<class T, class Enable = void>
	struct hash : std::hash<T>
	{
	};

	template<class T>
	struct hash<T, std::enable_if_t<detail::IsMixed<T>>>
	{
		using is_avalanching = void;

		uint64_t operator()(const T& value) const noexcept
		{
			if constexpr (std::is_pointer_v<T>)
			{
				return detail::Mix(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(value)));
			}
			else if constexpr (std::is_enum_v<T>)
			{
				return detail::Mix(static_cast<uint64_t>(static_cast<std::underlying_type_t<T>>(value)));
			}
			else
			{
				return detail::Mix(static_cast<uint64_t>(value));
			}
		}
	};

	template<
	  class Key,
	  class T,
	  class Hash      = hash<Key>,
	  class KeyEqual  = std::equal_to<Key>,
	  class Allocator = std::allocator<std::pair<const Key, T>>>
	class map : public absl::flat_hash_map<Key, T, Hash, KeyEqual, Allocator>
	{
		using Base = absl::flat_hash_map<Key, T, Hash, KeyEqual, Allocator>;

	public:
		using Base::Base;
		using Base::erase;
		using typename Base::iterator;

		// Standard (and unordered_dense) signature: the iterator after the erased
		// element. Erasing leaves every other slot in place, so `next` stays valid.
		iterator erase(iterator pos)
		{
			auto next = std::next(pos);

			Base::erase(pos);

			return next;
		}
	};

	template<
	  class Key,
	  class Hash      = hash<Key>,
	  class KeyEqual  = std::equal_to<Key>,
	  class Allocator = std::allocator<Key>>
	class set : public absl::flat_hash_set<Key, Hash, KeyEqual, Allocator>
	{
		using Base = absl::flat_hash_set<Key, Hash, KeyEqual, Allocator>;

	public:
		using Base::Base;
		using Base::erase;
		using typename Base::iterator;

		iterator erase(iterator pos)
		{
			auto next = std::next(pos);

			Base::erase(pos);

			return next;
		}
	};
} // namespace ankerl::unordered_dense
