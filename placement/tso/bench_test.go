package tso

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkNext: Next from GOMAXPROCS goroutines at once, on the system
// clock with the default window, for batches of 1 and of 64.
func BenchmarkNext(b *testing.B) {
	for _, count := range []int{1, 64} {
		b.Run("count="+strconv.Itoa(count), func(b *testing.B) {
			o, err := Open(context.Background(), &MemStore{}, Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := o.Next(ctx, count); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
