package engine

import (
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// NewLogger builds the process logger from the `log:` section. Parts log through entries carrying
// part=<name> and their own fields (center=, conn=, uuid=, channel=).
//
// Durations: text lines print Go duration strings (took=1.2ms); JSON lines print seconds as a number
// ("took":0.0012), which log pipelines can compare and sum. logrus alone would print nanoseconds.
func NewLogger(cfg LogConfig, out io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(out)
	if lvl, err := logrus.ParseLevel(cfg.Level); err == nil {
		l.SetLevel(lvl)
	}
	if cfg.Format == "json" {
		l.SetFormatter(&jsonFormatter{logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"}})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	}
	return l
}

// jsonFormatter is logrus's JSON formatter with time.Duration fields written as seconds.
type jsonFormatter struct{ logrus.JSONFormatter }

func (f *jsonFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var data logrus.Fields
	for k, v := range e.Data {
		d, ok := v.(time.Duration)
		if !ok {
			continue
		}
		if data == nil {
			data = make(logrus.Fields, len(e.Data))
			for k2, v2 := range e.Data {
				data[k2] = v2
			}
		}
		data[k] = d.Seconds()
	}
	if data == nil {
		return f.JSONFormatter.Format(e)
	}
	c := *e // a shallow copy: the caller's entry keeps its fields
	c.Data = data
	return f.JSONFormatter.Format(&c)
}
