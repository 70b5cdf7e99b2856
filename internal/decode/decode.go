// Package decode turns configuration values (YAML, environment variables, --set flags) into the engine's
// configuration structs, the same way for every section: mapstructure with weak typing, durations with a
// unit ("10s"; a bare 0), lists from "a,b", types that read text (encoding.TextUnmarshaler), and errors
// rewritten as "key.path: expected <form>, got <value>". engine.LoadConfig decodes the whole file with it,
// and the channels part each entry of its list.
package decode

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// Into decodes input (a map from YAML or viper) into out, a pointer to a struct holding its defaults, and
// returns one error per bad value, each naming its key path under prefix ("" or "channels[1]") and what was
// given (value looks a key path up in input; nil shows the value mapstructure saw).
func Into(out, input any, prefix string, value func(key string) any) []error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		WeaklyTypedInput: true,
		Squash:           true,
		DecodeHook:       Hooks(),
	})
	if err != nil {
		return []error{err}
	}
	if err := dec.Decode(input); err != nil {
		return Errors(err, prefix, value)
	}
	return nil
}

// Hooks turn the text forms of values into their types: durations ("10s"), lists ("a,b"), and any
// type that reads text (encoding.TextUnmarshaler, e.g. relay.centers from "primary=host:port,host:port").
func Hooks() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(TextHook, DurationHook, mapstructure.StringToSliceHookFunc(","))
}

var textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// TextHook decodes a string, or a list of strings (read as the strings joined by commas), into a type
// whose pointer is an encoding.TextUnmarshaler. Other values (a YAML map for a map type) decode as usual.
func TextHook(from, to reflect.Type, data any) (any, error) {
	if !reflect.PointerTo(to).Implements(textUnmarshalerType) {
		return data, nil
	}
	var text string
	switch x := data.(type) {
	case string:
		text = x
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			s, ok := p.(string)
			if !ok {
				return nil, fmt.Errorf("expected a list of strings, got %#v", p)
			}
			parts[i] = s
		}
		text = strings.Join(parts, ",")
	default:
		return data, nil
	}
	out := reflect.New(to)
	if err := out.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(text)); err != nil {
		return nil, err
	}
	return out.Elem().Interface(), nil
}

// DurationHook accepts "1500ms", "10s", "2m" and a bare 0; other numbers are refused because their unit
// would be a guess. Its errors say what was expected; Errors adds the key and what was given.
func DurationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return nil, errors.New("expected a duration such as 500ms, 10s or 2m")
		}
		return d, nil
	case int, int64, float64:
		if reflect.ValueOf(x).Convert(reflect.TypeOf(float64(0))).Float() == 0 {
			return time.Duration(0), nil
		}
		return nil, errors.New("expected a duration with a unit such as 10s (a bare number's unit would be a guess)")
	case time.Duration:
		return x, nil
	}
	return data, nil
}

var decodeLine = regexp.MustCompile(`'([^']*)' (.*)`)

// Errors rewrites mapstructure's messages as "prefix.key.path: what was wrong".
func Errors(err error, prefix string, value func(string) any) []error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		if m := decodeLine.FindStringSubmatch(line); m != nil {
			msg := m[2]
			for from, to := range map[string]string{"'int'": "a whole number", "'bool'": "true or false",
				"'float64'": "a number", "'string'": "a string"} {
				if strings.Contains(msg, "cannot parse value as "+from) || strings.Contains(msg, "expected type "+from) {
					msg = "expected " + to
				}
			}
			key := m[1]
			if prefix != "" {
				key = prefix + "." + key
			}
			out = append(out, fmt.Errorf("%s: %s, got %#v", key, msg, value(m[1])))
			continue
		}
		out = append(out, errors.New(line))
	}
	if len(out) == 0 {
		out = append(out, err)
	}
	return out
}

// Text decodes a value given as text (an environment variable, a flag) into out, a pointer, with Hooks.
func Text(text string, out any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: out, WeaklyTypedInput: true, DecodeHook: Hooks()})
	if err != nil {
		return err
	}
	if err := dec.Decode(text); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "decoding failed due to the following error(s):\n\n"))
	}
	return nil
}

// FieldByKey finds the struct field at a key path (mapstructure tags) under v.
func FieldByKey(v reflect.Value, key string) (reflect.Value, error) {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		found := false
		for i := 0; i < t.NumField(); i++ {
			if strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0] == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, fmt.Errorf("%s: unknown key", key)
		}
	}
	return v, nil
}
