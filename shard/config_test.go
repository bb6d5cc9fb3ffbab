package shard

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	c := Config{}.withDefaults()
	if c.MaxKeyBytes != DefaultMaxKeyBytes || c.MaxValueBytes != DefaultMaxValueBytes || c.MaxBatchOps != DefaultMaxBatchOps ||
		c.MaxClients != DefaultMaxClients || c.ClientTTLEntries != DefaultClientTTLEntries || c.SnapshotChunkBytes != DefaultSnapshotChunkBytes ||
		c.TxnRecordRetention != DefaultTxnRecordRetention {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	cfg := Config{MaxKeyBytes: -1, MaxValueBytes: -1, MaxBatchOps: -1, MaxClients: -1, SnapshotChunkBytes: -1}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"MaxKeyBytes", "MaxValueBytes", "MaxBatchOps", "MaxClients", "SnapshotChunkBytes"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not mention %s: %v", field, err)
		}
	}
	if cfg.MaxKeyBytes != -1 {
		t.Fatal("Validate modified the caller's config")
	}
	if err := (Config{TxnRecordRetention: -1}).Validate(); err != nil {
		t.Fatalf("a negative TxnRecordRetention (keep forever) refused: %v", err)
	}
	if err := (Config{TxnRecordRetention: 31 * 24 * time.Hour}).Validate(); err == nil || !strings.Contains(err.Error(), "TxnRecordRetention") {
		t.Fatalf("a TxnRecordRetention of 31 days: %v", err)
	}
	if err := (Config{MaxValueBytes: 40 << 20}).Validate(); err == nil {
		t.Fatal("values too large for a snapshot frame accepted")
	}
	if _, err := NewStateMachine(cfg, 1, 1, newDB(t)); err == nil {
		t.Fatal("NewStateMachine accepted an invalid config")
	}
	if _, err := NewStateMachineFunc(cfg)(1, 1, newDB(t)); err == nil {
		t.Fatal("NewStateMachineFunc accepted an invalid config")
	}
}
