package decode

import (
	"strings"
	"testing"
	"time"
)

type section struct {
	Port    int           `mapstructure:"port"`
	On      bool          `mapstructure:"on"`
	Wait    time.Duration `mapstructure:"wait"`
	Rooms   []string      `mapstructure:"rooms"`
	Keep    string        `mapstructure:"keep"`
	Centers names         `mapstructure:"centers"`
}

// names reads "a,b" as text.
type names []string

func (n *names) UnmarshalText(b []byte) error { *n = strings.Split(string(b), ","); return nil }

func TestInto(t *testing.T) {
	s := section{Keep: "default"}
	in := map[string]any{"port": "80", "on": "true", "wait": "1500ms", "rooms": "a,b", "centers": []any{"x", "y"}}
	if errs := Into(&s, in, "", nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	if s.Port != 80 || !s.On || s.Wait != 1500*time.Millisecond || strings.Join(s.Rooms, "|") != "a|b" || s.Keep != "default" ||
		strings.Join(s.Centers, "|") != "x|y" {
		t.Fatalf("%+v", s)
	}
}

// Every bad value is an error naming its key under the prefix, what was expected and what was given.
func TestIntoErrors(t *testing.T) {
	in := map[string]any{"port": "x", "on": "maybe", "wait": 10}
	errs := Into(&section{}, in, "channels[1]", func(k string) any { return in[k] })
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	for _, want := range []string{
		`channels[1].port: expected a whole number, got "x"`,
		`channels[1].on: expected true or false, got "maybe"`,
		`channels[1].wait: expected a duration with a unit such as 10s (a bare number's unit would be a guess), got 10`,
	} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("missing %q in %q", want, got)
		}
	}
	var d time.Duration
	if err := Text("0", &d); err != nil || d != 0 {
		t.Errorf("a bare 0 is a duration: %v %v", d, err)
	}
}
