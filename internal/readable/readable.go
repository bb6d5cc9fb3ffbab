// Package readable prints figures as an operator reads them, the same way
// in the status page's banner, its script and the CLI's tables.
package readable

import (
	"fmt"
	"time"
)

// Duration prints d as an operator reads it, in at most two
// units: "850 ms" below a second, "12.3 s" below a minute, "4 min 10 s"
// below an hour, "2 h 5 min" below a day, "3 d 4 h" beyond (the smaller
// unit left out when it is 0: "10 min"). Placement's status page
// (its script's duration, in placement/web/status.html) prints the times
// it shows the same way.
func Duration(d time.Duration) string {
	d = max(d, 0)
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	// Each case takes d rounded to its smaller unit, so 59.96 s is
	// "1 min", not "60.0 s".
	if r := d.Round(100 * time.Millisecond); r < time.Minute {
		return fmt.Sprintf("%.1f s", r.Seconds())
	}
	two := func(r, big, small time.Duration, bigName, smallName string) string {
		s := fmt.Sprintf("%d %s", r/big, bigName)
		if rest := r % big / small; rest != 0 {
			s += fmt.Sprintf(" %d %s", rest, smallName)
		}
		return s
	}
	if r := d.Round(time.Second); r < time.Hour {
		return two(r, time.Minute, time.Second, "min", "s")
	}
	if r := d.Round(time.Minute); r < 24*time.Hour {
		return two(r, time.Hour, time.Minute, "h", "min")
	}
	return two(d.Round(time.Hour), 24*time.Hour, time.Hour, "d", "h")
}
