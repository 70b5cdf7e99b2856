package engine

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/internal/decode"
)

// Keys that hold a map or a list of sections take single entries from --set and the environment, besides
// the whole value from the file (config.go, LoadConfig).

// mapKey is a key whose value is a map (relay.centers, relay.center_tls): besides the whole map (YAML, or
// text from the environment or a flag when the type reads text), single entries can be set with
// `--set <key>.<name>=value` and `SWITCHBOARD_<KEY>_<NAME>=value`; for a map of sections, one field at a
// time: `--set <key>.<name>.<field>=value`.
type mapKey struct {
	key    string
	fields []string // the entry's key paths when an entry is a section; nil when an entry is one value
}

// mapKeys lists the map-valued keys of a config type.
func mapKeys(t reflect.Type) []mapKey {
	var out []mapKey
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
			if tag == "-" || !f.IsExported() {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}):
				walk(key, f.Type)
			case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String:
				mk := mapKey{key: key}
				if el := f.Type.Elem(); el.Kind() == reflect.Struct {
					fl := map[string]any{}
					flatten("", reflect.New(el).Elem(), fl)
					for k := range fl {
						mk.fields = append(mk.fields, k)
					}
					sort.Strings(mk.fields)
				}
				out = append(out, mk)
			}
		}
	}
	walk("", t)
	return out
}

// entryOverride sets one entry (or one field of an entry) of a map key.
type entryOverride struct {
	mapKey string
	name   string // the entry's name
	field  string // the field's key path in the entry; "" when the entry is one value
	value  string // "" removes an entry that is one value
}

func (e entryOverride) key() string {
	if e.field == "" {
		return e.mapKey + "." + e.name
	}
	return e.mapKey + "." + e.name + "." + e.field
}

// setEntry reads a --set key that names an entry of a map key: relay.centers.primary,
// relay.center_tls.primary.cert. The name may hold dots (relay.centers.10.0.0.1:3270).
func setEntry(k string, maps []mapKey) (entryOverride, bool) {
	for _, m := range maps {
		rest, ok := strings.CutPrefix(k, m.key+".")
		if !ok || rest == "" {
			continue
		}
		if m.fields == nil {
			return entryOverride{mapKey: m.key, name: rest}, true
		}
		for _, f := range m.fields {
			if name, ok := strings.CutSuffix(rest, "."+f); ok && name != "" {
				return entryOverride{mapKey: m.key, name: name, field: f}, true
			}
		}
	}
	return entryOverride{}, false
}

// envEntry reads an environment variable name (without SWITCHBOARD_) that names an entry of a map key:
// RELAY_CENTERS_PRIMARY, RELAY_CENTER_TLS_PRIMARY_CERT. The entry's name comes out in lower case (as YAML
// keys do); names with characters a variable cannot hold (. - :) are set with the whole map's text form.
func envEntry(name string, maps []mapKey) (entryOverride, bool) {
	want := strings.ToLower(name)
	var best entryOverride
	found := false
	for _, m := range maps {
		rest, ok := strings.CutPrefix(want, strings.ReplaceAll(m.key, ".", "_")+"_")
		if !ok || rest == "" || found && len(m.key) <= len(best.mapKey) {
			continue
		}
		if m.fields == nil {
			best, found = entryOverride{mapKey: m.key, name: rest}, true
			continue
		}
		for _, f := range m.fields {
			if n, ok := strings.CutSuffix(rest, "_"+strings.ReplaceAll(f, ".", "_")); ok && n != "" {
				best, found = entryOverride{mapKey: m.key, name: n, field: f}, true
				break
			}
		}
	}
	return best, found
}

// apply sets the entry in cfg, decoding the value as the file's value would be.
func (e entryOverride) apply(cfg *Config) error {
	mv, err := decode.FieldByKey(reflect.ValueOf(cfg).Elem(), e.mapKey)
	if err != nil {
		return err
	}
	if mv.IsNil() {
		mv.Set(reflect.MakeMap(mv.Type()))
	}
	name := reflect.ValueOf(e.name).Convert(mv.Type().Key())
	if e.field == "" {
		if e.value == "" {
			mv.SetMapIndex(name, reflect.Value{})
			return nil
		}
		el := reflect.New(mv.Type().Elem())
		if err := decode.Text(e.value, el.Interface()); err != nil {
			return fmt.Errorf("%s: %v, got %q", e.key(), err, e.value)
		}
		mv.SetMapIndex(name, el.Elem())
		return nil
	}
	el := reflect.New(mv.Type().Elem()).Elem()
	if cur := mv.MapIndex(name); cur.IsValid() {
		el.Set(cur)
	}
	fv, err := decode.FieldByKey(el, e.field)
	if err != nil {
		return err
	}
	dst := reflect.New(fv.Type())
	if err := decode.Text(e.value, dst.Interface()); err != nil {
		return fmt.Errorf("%s: %v, got %q", e.key(), err, e.value)
	}
	fv.Set(dst.Elem())
	mv.SetMapIndex(name, el)
	return nil
}

// channelOverride sets one key of one entry of the channels list: --set channels[1].port=81 (or
// channels.1.port=81) and SWITCHBOARD_CHANNELS_1_PORT=81. The key is any spelling the file accepts
// (channel.CanonicalKey); an index one past the end adds an entry.
type channelOverride struct {
	index int
	key   string // canonical
	value string
}

func (o channelOverride) path() string { return fmt.Sprintf("channels[%d].%s", o.index, o.key) }

var setChannelKey = regexp.MustCompile(`^channels(?:\[(\d+)\]|\.(\d+))\.(.+)$`)

// setChannel reads a --set key that names a key of a channel entry.
func setChannel(k, value string) (channelOverride, bool, error) {
	m := setChannelKey.FindStringSubmatch(k)
	if m == nil {
		return channelOverride{}, false, nil
	}
	idx, _ := strconv.Atoi(m[1] + m[2])
	canon, ok := channel.CanonicalKey(m[3])
	if !ok {
		return channelOverride{}, true, fmt.Errorf("%s: unknown key (from --set)", k)
	}
	return channelOverride{index: idx, key: canon, value: value}, true, nil
}

var envChannelKey = regexp.MustCompile(`^channels_(\d+)_(.+)$`)

// envChannel reads an environment variable name (without SWITCHBOARD_) that names a key of a channel
// entry: CHANNELS_0_PORT, CHANNELS_1_TLS_CA, CHANNELS_0_INBOUND_DELIMITER.
func envChannel(name, value string) (channelOverride, bool) {
	m := envChannelKey.FindStringSubmatch(strings.ToLower(name))
	if m == nil {
		return channelOverride{}, false
	}
	idx, _ := strconv.Atoi(m[1])
	key := m[2]
	canon, ok := channel.CanonicalKey(key)
	if !ok {
		// inbound_delimiter: the direction's separator is a dot in the file
		if dir, rest, cut := strings.Cut(key, "_"); cut && (dir == "inbound" || dir == "outbound") {
			canon, ok = channel.CanonicalKey(dir + "." + rest)
		}
	}
	if !ok {
		return channelOverride{}, false
	}
	return channelOverride{index: idx, key: canon, value: value}, true
}

// applyChannels sets the overrides in the raw channels list of the file (later ones win) and returns it.
func applyChannels(raw any, overrides []channelOverride) (any, error) {
	if len(overrides) == 0 {
		return raw, nil
	}
	var list []any
	switch l := raw.(type) {
	case nil:
	case []any:
		list = l
	default:
		return raw, nil // ParseConfigs says what is wrong with it
	}
	for _, o := range overrides {
		switch {
		case o.index == len(list):
			list = append(list, map[string]any{})
		case o.index > len(list):
			return nil, fmt.Errorf("%s: no such entry: channels has %d (an index one past the end adds one)", o.path(), len(list))
		}
		entry, ok := list[o.index].(map[string]any)
		if !ok {
			continue // ParseConfigs says what is wrong with it
		}
		list[o.index] = channel.SetKey(entry, o.key, o.value)
	}
	return list, nil
}
