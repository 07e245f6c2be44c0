// Package calendarstep is the calendar's state-machine step, "append
// second t": a deterministic function from the calendar's state and the
// roots submitted for second t to the leaf of t, the top tree the
// submitters' signatures are cut from, the next state and the nodes to
// store. It reads nothing and writes nothing; the caller stores the
// nodes of each batch durably before it uses the state after it.
//
// The single-node calendar applies it when its schedule closes a second;
// a replicated calendar applies it to the same committed log entries on
// every member, and so every member stores the same nodes and signs the
// same roots (docs/design/architecture.md#the-state-machine-step).
//
// The step is built from two pure parts: [round.Build] turns the roots
// into the top tree whose root is the leaf (the empty leaf for a second
// without roots), and [calendartree.Append] appends it, after empty
// leaves for the seconds between the last appended one and t.
package calendarstep
