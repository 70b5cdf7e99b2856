// Package ivrmenu runs FreeSWITCH-style IVR menus (mod_lua's freeswitch.IVRMenu, switch_ivr_menu.c) on the
// engine side: FreeSWITCH's own `ivr` application runs only menus from ivr.conf, so a menu built by a script
// is played, collected and dispatched here through a small Channel interface (esl.Session implements what it
// needs in the Lua binding; tests use a fake).
package ivrmenu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Channel is what a menu needs from a call.
type Channel interface {
	Ready() bool
	// Play plays file; a digit stops it and stays queued for Collect.
	Play(ctx context.Context, file string) error
	// Collect reads up to max digits: the first within first, the next within inter; '#' ends early.
	Collect(ctx context.Context, max int, first, inter time.Duration) (string, error)
	// Execute runs a dialplan application.
	Execute(ctx context.Context, app, arg string) error
	// Event reports menu::enter / menu::exit (FreeSWITCH fires CUSTOM events); may do nothing.
	Event(ctx context.Context, subclass, menu string)
}

// Action is what a binding does.
type Action string

// The actions of switch_ivr_menu.c that a script can bind.
const (
	Exit      Action = "menu-exit"
	Sub       Action = "menu-sub"
	ExecApp   Action = "menu-exec-app"
	PlaySound Action = "menu-play-sound"
	Back      Action = "menu-back"
	Top       Action = "menu-top"
)

// Menu is one menu: prompts, limits and bindings. Build it with New, bind with Bind, run with Run.
type Menu struct {
	Name          string
	Greeting      string
	ShortGreeting string
	Invalid       string
	ExitSound     string
	InterTimeout  time.Duration
	Timeout       time.Duration
	DigitLen      int
	MaxFailures   int
	MaxTimeouts   int

	parent   *Menu
	top      *Menu
	menus    map[string]*Menu // by name, kept by the top menu
	bindings []binding
}

type binding struct {
	action Action
	arg    string
	digits string
	re     *regexp.Regexp
}

// New makes a menu; parent (nil for a top menu) makes it a submenu reachable by name with menu-sub.
// Defaults as FreeSWITCH's: timeout <= 0 is 10 s, inter timeout 0 is half the timeout, failures and
// timeouts <= 0 are 3, digit length < 1 is 1.
func New(parent *Menu, name string) *Menu {
	m := &Menu{Name: name, parent: parent}
	if parent != nil {
		m.top = parent.top
	} else {
		m.top = m
		m.menus = map[string]*Menu{}
	}
	m.top.menus[name] = m
	return m
}

func (m *Menu) defaults() {
	if m.Timeout <= 0 {
		m.Timeout = 10 * time.Second
	}
	if m.InterTimeout <= 0 {
		m.InterTimeout = m.Timeout / 2
	}
	if m.MaxFailures <= 0 {
		m.MaxFailures = 3
	}
	if m.MaxTimeouts <= 0 {
		m.MaxTimeouts = 3
	}
	if m.DigitLen < 1 {
		m.DigitLen = 1
	}
}

// Bind ties digits to an action: exact digits, or a regular expression between slashes ("/^[2-4]$/").
func (m *Menu) Bind(action, arg, digits string) error {
	a := Action(strings.ToLower(action))
	switch a {
	case Exit, Sub, ExecApp, PlaySound, Back, Top:
	default:
		return fmt.Errorf("ivrmenu: unknown action %q (menu-exit, menu-sub, menu-exec-app, menu-play-sound, menu-back, menu-top)", action)
	}
	b := binding{action: a, arg: arg, digits: digits}
	if len(digits) > 2 && strings.HasPrefix(digits, "/") && strings.HasSuffix(digits, "/") {
		re, err := regexp.Compile(digits[1 : len(digits)-1])
		if err != nil {
			return fmt.Errorf("ivrmenu: digits %q: %w", digits, err)
		}
		b.re = re
	} else if len(digits) > m.DigitLen {
		m.DigitLen = len(digits)
	}
	m.bindings = append(m.bindings, b)
	return nil
}

func (m *Menu) match(d string) *binding {
	for i := range m.bindings {
		b := &m.bindings[i]
		if (b.re != nil && b.re.MatchString(d)) || (b.re == nil && b.digits == d) {
			return b
		}
	}
	return nil
}

// Find returns the menu called name in m's tree.
func (m *Menu) Find(name string) *Menu { return m.top.menus[name] }

// errTop unwinds to the top menu.
var errTop = errors.New("ivrmenu: top")

// Run plays the menu until an exit, too many failures or timeouts, or the caller leaving. Errors of the
// channel (hangup, cancellation) are returned.
func (m *Menu) Run(ctx context.Context, ch Channel) error {
	for {
		err := m.run(ctx, ch)
		if errors.Is(err, errTop) {
			if m.parent == nil {
				continue
			}
			return err
		}
		return err
	}
}

type outcome int

const (
	stay outcome = iota
	leave
	back
)

func (m *Menu) run(ctx context.Context, ch Channel) error {
	m.defaults()
	ch.Event(ctx, "menu::enter", m.Name)
	defer ch.Event(ctx, "menu::exit", m.Name)
	failures, timeouts := 0, 0
	first := true
	for ch.Ready() {
		prompt := m.Greeting
		if !first && m.ShortGreeting != "" {
			prompt = m.ShortGreeting
		}
		first = false
		if prompt != "" {
			if err := ch.Play(ctx, prompt); err != nil {
				return err
			}
		}
		digits, err := ch.Collect(ctx, m.DigitLen, m.Timeout, m.InterTimeout)
		if err != nil {
			return err
		}
		if digits == "" {
			timeouts++
			if timeouts >= m.MaxTimeouts {
				break
			}
			continue
		}
		b := m.match(digits)
		if b == nil {
			failures++
			if m.Invalid != "" {
				if err := ch.Play(ctx, m.Invalid); err != nil {
					return err
				}
			}
			if failures >= m.MaxFailures {
				break
			}
			continue
		}
		out, err := m.act(ctx, ch, b)
		if err != nil {
			return err
		}
		switch out {
		case leave:
			if m.ExitSound != "" && ch.Ready() {
				if err := ch.Play(ctx, m.ExitSound); err != nil {
					return err
				}
			}
			return nil
		case back:
			return nil
		}
	}
	if m.ExitSound != "" && ch.Ready() {
		return ch.Play(ctx, m.ExitSound)
	}
	return nil
}

func (m *Menu) act(ctx context.Context, ch Channel, b *binding) (outcome, error) {
	switch b.action {
	case Exit:
		return leave, nil
	case Back:
		return back, nil
	case Top:
		if m.parent == nil {
			return stay, nil
		}
		return stay, errTop
	case PlaySound:
		return stay, ch.Play(ctx, b.arg)
	case ExecApp:
		app, arg, _ := strings.Cut(strings.TrimSpace(b.arg), " ")
		if err := ch.Execute(ctx, app, arg); err != nil {
			return stay, err
		}
		if !ch.Ready() {
			return leave, nil
		}
		return stay, nil
	case Sub:
		sub := m.Find(b.arg)
		if sub == nil {
			return stay, fmt.Errorf("ivrmenu: no menu %q for menu-sub", b.arg)
		}
		if err := sub.run(ctx, ch); err != nil {
			return stay, err
		}
		return stay, nil
	}
	return stay, nil
}
