package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flotilla-kv/flotilla/internal/txncheck"
)

// levelName is a short name of an isolation level for the cycle line.
func levelName(l txncheck.Level) string {
	if l == txncheck.Serializable {
		return "serializable"
	}
	return "snapshot"
}

// saveTxnHistories writes a cycle's bank record and list-append history
// to <out>/<name>-bank.txt and .json, and <out>/<name>-listappend.txt
// and .jsonl (a txncheck.Txn per line, for txncheck.Check), and prints
// the violations and the paths.
func saveTxnHistories(out, name string, cycle int, bank BankRun, br BankReport, la []txncheck.Txn, tr TxnReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "cycle %d bank: %d accounts of %d\ntransfers:\n", cycle, bank.Accounts, bank.Initial)
	for _, t := range bank.Transfers {
		b.WriteString(t.String() + "\n")
	}
	b.WriteString("audits:\n")
	for _, a := range bank.Audits {
		b.WriteString(a.String() + "\n")
	}
	b.WriteString("bank violations:\n")
	for _, v := range br.Violations {
		b.WriteString(v + "\n")
	}
	bankPath := filepath.Join(out, name+"-bank.txt")
	_ = os.WriteFile(bankPath, []byte(b.String()), 0o644)
	if data, err := json.Marshal(bank); err == nil {
		_ = os.WriteFile(filepath.Join(out, name+"-bank.json"), data, 0o644)
	}

	b.Reset()
	fmt.Fprintf(&b, "cycle %d list-append at %s:\n", cycle, tr.Level)
	for _, t := range la {
		b.WriteString(t.String() + "\n")
	}
	b.WriteString("list-append violations:\n")
	for _, v := range tr.Violations {
		b.WriteString(v + "\n")
	}
	laPath := filepath.Join(out, name+"-listappend.txt")
	_ = os.WriteFile(laPath, []byte(b.String()), 0o644)
	var jl strings.Builder
	for _, t := range la {
		if data, err := json.Marshal(t); err == nil {
			jl.Write(data)
			jl.WriteByte('\n')
		}
	}
	_ = os.WriteFile(filepath.Join(out, name+"-listappend.jsonl"), []byte(jl.String()), 0o644)

	for _, v := range br.Violations {
		fmt.Printf("chaos: BANK cycle %d: %s\n", cycle, firstLine(v))
	}
	for _, v := range tr.Violations {
		fmt.Printf("chaos: TXN cycle %d: %s\n", cycle, firstLine(v))
	}
	if len(br.Violations) > 0 || len(tr.Violations) > 0 {
		fmt.Printf("chaos: transactions of cycle %d: %s, %s\n", cycle, bankPath, laPath)
	}
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
