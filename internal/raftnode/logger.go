package raftnode

import (
	"fmt"
	"log/slog"
)

// raftLogger sends etcd raft's messages to slog. raft calls Fatal and
// Panic only on broken invariants; both panic, and the Ready loop turns
// the panic into the member's fatal error.
type raftLogger struct{ log *slog.Logger }

func (l raftLogger) Debug(v ...any) { l.log.Debug(fmt.Sprint(v...), "component", "raft") }
func (l raftLogger) Debugf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "raft")
}
func (l raftLogger) Info(v ...any) { l.log.Info(fmt.Sprint(v...), "component", "raft") }
func (l raftLogger) Infof(format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...), "component", "raft")
}
func (l raftLogger) Warning(v ...any) { l.log.Warn(fmt.Sprint(v...), "component", "raft") }
func (l raftLogger) Warningf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "raft")
}
func (l raftLogger) Error(v ...any) { l.log.Error(fmt.Sprint(v...), "component", "raft") }
func (l raftLogger) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), "component", "raft")
}
func (l raftLogger) Fatal(v ...any) { l.Panic(v...) }
func (l raftLogger) Fatalf(format string, v ...any) {
	l.Panicf(format, v...)
}
func (l raftLogger) Panic(v ...any) {
	msg := fmt.Sprint(v...)
	l.log.Error(msg, "component", "raft", "fatal", true)
	panic(raftPanic(msg))
}
func (l raftLogger) Panicf(format string, v ...any) { l.Panic(fmt.Sprintf(format, v...)) }

type raftPanic string
