// An outside judge for the audit log, written against Go's golang.org/x/mod (Debian's
// golang-golang-x-mod-dev): sumdb/note opens a signed checkpoint with the log's verifier key, and
// sumdb/tlog checks an inclusion proof and a consistency proof against the checkpoint's root.
// It reads one JSON request on stdin and prints one JSON answer; it has no opinion of its own.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	VKey        string   `json:"vkey"`
	Note        string   `json:"note"`
	Size        int64    `json:"size"`
	Root        []byte   `json:"root"`
	Index       int64    `json:"index"`
	Entry       []byte   `json:"entry"`
	Inclusion   [][]byte `json:"inclusion"`
	OldSize     int64    `json:"old_size"`
	OldRoot     []byte   `json:"old_root"`
	Consistency [][]byte `json:"consistency"`
}

type answer struct {
	Text        string   `json:"text"`
	Signers     []string `json:"signers"`
	Unverified  int      `json:"unverified"`
	Note        string   `json:"note"`
	Inclusion   string   `json:"inclusion"`
	Consistency string   `json:"consistency"`
}

func hash(b []byte) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("hash of %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

func hashes(bs [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(bs))
	for _, b := range bs {
		h, err := hash(b)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func result(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "judge:", err)
		os.Exit(2)
	}
	var ans answer
	v, err := note.NewVerifier(req.VKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "judge: verifier key:", err)
		os.Exit(2)
	}
	n, err := note.Open([]byte(req.Note), note.VerifierList(v))
	ans.Note = result(err)
	if err == nil {
		ans.Text = n.Text
		for _, s := range n.Sigs {
			ans.Signers = append(ans.Signers, s.Name)
		}
		ans.Unverified = len(n.UnverifiedSigs)
	}
	root, err := hash(req.Root)
	if err != nil {
		ans.Inclusion, ans.Consistency = err.Error(), err.Error()
	} else {
		proof, perr := hashes(req.Inclusion)
		if perr == nil {
			perr = tlog.CheckRecord(proof, req.Size, root, req.Index, tlog.RecordHash(req.Entry))
		}
		ans.Inclusion = result(perr)
		old, oerr := hash(req.OldRoot)
		cons, cerr := hashes(req.Consistency)
		if oerr != nil {
			cerr = oerr
		}
		if cerr == nil {
			cerr = tlog.CheckTree(cons, req.Size, root, req.OldSize, old)
		}
		ans.Consistency = result(cerr)
	}
	if err := json.NewEncoder(os.Stdout).Encode(ans); err != nil {
		os.Exit(2)
	}
}
