package luabind

// ScriptInfo is one script of a generation, as the status page lists it.
type ScriptInfo struct {
	File     string        `json:"file"`   // display path, e.g. scripts/actions.lua
	Module   bool          `json:"module"` // under lib/: runs only through require
	Handlers []HandlerInfo `json:"handlers"`
}

// HandlerInfo is one thing a script registered: kind (action, verb, flow, on, timer, transform,
// subscribe, ...), name, and where (file:line).
type HandlerInfo struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Where string `json:"where"`
}

// Scripts lists the generation's scripts in load order, each with the handlers it registered.
func (g *Generation) Scripts() []ScriptInfo {
	out := make([]ScriptInfo, len(g.scripts))
	byFile := make(map[string]int, len(g.scripts))
	for i, s := range g.scripts {
		out[i] = ScriptInfo{File: s.Name, Module: s.Module, Handlers: []HandlerInfo{}}
		byFile[s.Name] = i
	}
	for _, h := range g.handlers {
		if h.Part {
			continue // listed with its handler (an action's validator)
		}
		file, _ := splitWhere(h.Where)
		i, ok := byFile[file]
		if !ok {
			continue // its place is unknown
		}
		out[i].Handlers = append(out[i].Handlers, HandlerInfo{Kind: h.Kind, Name: h.Name, Where: h.Where})
	}
	return out
}

// splitWhere splits "file:line" at its last colon.
func splitWhere(where string) (file, line string) {
	for i := len(where) - 1; i >= 0; i-- {
		if where[i] == ':' {
			return where[:i], where[i+1:]
		}
	}
	return where, ""
}
