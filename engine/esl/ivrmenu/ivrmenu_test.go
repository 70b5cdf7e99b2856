package ivrmenu

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fake plays a scripted caller: each Collect returns the next input ("" = timeout).
type fake struct {
	inputs []string
	log    []string
	up     bool
}

func (f *fake) Ready() bool { return f.up }
func (f *fake) Play(ctx context.Context, file string) error {
	f.log = append(f.log, "play "+file)
	return nil
}
func (f *fake) Collect(ctx context.Context, max int, first, inter time.Duration) (string, error) {
	if len(f.inputs) == 0 {
		f.up = false
		return "", nil
	}
	in := f.inputs[0]
	f.inputs = f.inputs[1:]
	f.log = append(f.log, "collect "+in)
	return in, nil
}
func (f *fake) Execute(ctx context.Context, app, arg string) error {
	f.log = append(f.log, "execute "+app+" "+arg)
	if app == "transfer" {
		f.up = false
	}
	return nil
}
func (f *fake) Event(ctx context.Context, sub, menu string) { f.log = append(f.log, sub+" "+menu) }

func TestMenu(t *testing.T) {
	top := New(nil, "main")
	top.Greeting, top.ShortGreeting, top.Invalid, top.ExitSound = "long.wav", "short.wav", "invalid.wav", "bye.wav"
	top.MaxFailures, top.MaxTimeouts = 2, 2
	sub := New(top, "sales")
	sub.Greeting = "sales.wav"
	for _, b := range [][3]string{{"menu-sub", "sales", "1"}, {"menu-play-sound", "hours.wav", "2"}, {"menu-exec-app", "transfer 1000 XML default", "/^9[0-9]$/"}, {"menu-exit", "", "*"}} {
		if err := top.Bind(b[0], b[1], b[2]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Bind("menu-back", "", "0"); err != nil {
		t.Fatal(err)
	}
	if err := sub.Bind("menu-top", "", "#"); err != nil {
		t.Fatal(err)
	}
	if err := top.Bind("menu-nothing", "", "5"); err == nil {
		t.Fatal("unknown action accepted")
	}
	f := &fake{up: true, inputs: []string{"1", "0", "2", "7", "", "91"}}
	if err := top.Run(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	want := "menu::enter main|play long.wav|collect 1|menu::enter sales|play sales.wav|collect 0|menu::exit sales|play short.wav|collect 2|play hours.wav|" +
		"play short.wav|collect 7|play invalid.wav|play short.wav|collect |play short.wav|collect 91|execute transfer 1000 XML default|menu::exit main"
	if got := strings.Join(f.log, "|"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Two failures end the menu with the exit sound.
	f = &fake{up: true, inputs: []string{"7", "8", "1"}}
	if err := top.Run(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.log, "|"); !strings.HasSuffix(got, "collect 8|play invalid.wav|play bye.wav|menu::exit main") {
		t.Fatalf("failures: %s", got)
	}
}
