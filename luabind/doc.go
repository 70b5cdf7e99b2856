// Package luabind is Switchboard's Lua runtime, and only that: it compiles the scripts into generations
// (a reload builds a new one beside the serving one and swaps it in only when every script loaded), keeps a
// pool of small sandboxed VMs per generation, runs handlers under their time limit and their caller's
// deadline, bounds memory (string and table limits, conversion budgets, the memory guard), converts values
// between Lua and Go or JSON, reports script errors as file:line with the event that ran them, and provides
// the core of the switchboard module (sb.on, sb.after, sb.every, sb.publish, sb.subscribe, sb.log,
// sb.cache, sb.json, sb.sleep, sb.now, sb.uuid). docs/architecture.md describes how.
//
// It imports no part. Each part's Lua surface is a Binding in the part's own tree
// (engine/<part>/<part>lua), registered before the first Load and opened in every VM; a binding with a
// folder of scripts of its own (mod_lua-style flows) is a Claimer. Bindings are built on what this package
// exports for them: VMOf, VM.Register, Generation.Run/RunVM/Call/Acquire, Runtime.Shared, Raise, and the
// value helpers (Budget, FromLuaWithin, ToLua, ArrayLen, AppendJSONObject). luabindtest helps their tests.
package luabind
