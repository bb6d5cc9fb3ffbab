package tso

import (
	"context"
	"sync"
)

// MemStore is a Store in memory: the limit lives as long as the process.
// An Oracle over it is the oracle of one process (tests, the simulator, a
// single-process tool): it orders every timestamp that process hands out,
// and nothing beyond it.
type MemStore struct {
	mu    sync.Mutex
	limit Timestamp
}

// Load implements Store.
func (m *MemStore) Load(context.Context) (Timestamp, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.limit, nil
}

// Save implements Store: it keeps the highest limit saved.
func (m *MemStore) Save(_ context.Context, limit Timestamp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = max(m.limit, limit)
	return nil
}

// Local returns an Oracle over a fresh MemStore with the default Config:
// one process's oracle (see MemStore).
func Local() *Oracle {
	o, err := Open(context.Background(), &MemStore{}, Config{})
	if err != nil {
		panic("tso: opening an oracle in memory: " + err.Error())
	}
	return o
}
