// Throng stand-in for ankerl::unordered_dense (martinus/unordered_dense 5.x),
// which no package registry ships. mediasoup uses only `map`, `set` and `hash`,
// with the standard container interface; these aliases provide exactly that on
// top of std::unordered_map / std::unordered_set.
//
// Behaviour differences, none of which mediasoup relies on: iteration order,
// node-based storage (slower lookups, see BENCHMARKS.md), and `hash` returns
// size_t rather than uint64_t (identical on the 64-bit targets we build).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace ankerl::unordered_dense
{
	template<class T, class Enable = void>
	struct hash : std::hash<T>
	{
	};

	template<
	  class Key,
	  class T,
	  class Hash      = hash<Key>,
	  class KeyEqual  = std::equal_to<Key>,
	  class Allocator = std::allocator<std::pair<const Key, T>>>
	using map = std::unordered_map<Key, T, Hash, KeyEqual, Allocator>;

	template<
	  class Key,
	  class Hash      = hash<Key>,
	  class KeyEqual  = std::equal_to<Key>,
	  class Allocator = std::allocator<Key>>
	using set = std::unordered_set<Key, Hash, KeyEqual, Allocator>;
} // namespace ankerl::unordered_dense
