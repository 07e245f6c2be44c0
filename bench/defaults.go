package bench

// DefaultConns is the number of connections of the lean client when
// [Config.Conns] is 0: two keep both server cores busy with the answers
// of one generator.
const DefaultConns = 2
