package engine

import (
	"io"

	"github.com/sirupsen/logrus"
)

// NewLogger builds the process logger from the `log:` section. Parts log through entries carrying
// part=<name> and their own fields (center=, conn=, uuid=, channel=).
func NewLogger(cfg LogConfig, out io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(out)
	if lvl, err := logrus.ParseLevel(cfg.Level); err == nil {
		l.SetLevel(lvl)
	}
	if cfg.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	}
	return l
}
