//go:build js && wasm

// Command wasm is the browser half of the verify page: built with
// GOOS=js GOARCH=wasm (make wasm), it registers one JavaScript function,
// tempelVerify, that runs [webverify.Check] (the verifier package of the
// CLI) on bytes the page read from the person's files. Nothing leaves
// the browser.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall/js"
	"time"

	"github.com/tempel-ksi/tempel/internal/webverify"
)

func main() {
	js.Global().Set("tempelVerify", js.FuncOf(verify))
	js.Global().Set("tempelHashStart", js.FuncOf(hashStart))
	js.Global().Set("tempelHashWrite", js.FuncOf(hashWrite))
	// Tell the page the function exists; then keep the Go side alive.
	if ready := js.Global().Get("tempelReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {}
}

// hasher is the document being hashed in pieces: the page calls
// tempelHashStart(signature), tempelHashWrite(piece) for each slice of
// the file, then tempelVerify({documentHashed: true, ...}). JavaScript
// runs one call at a time, and the page one verification at a time.
var hasher *webverify.DocumentHasher

// hashStart begins hashing a document for the signature given (a
// Uint8Array). It returns "" when the page may go on, else the Result
// (JSON) that decides the case without the document: a signature that
// cannot be read, or a hash algorithm this build does not have.
func hashStart(_ js.Value, args []js.Value) (out any) {
	defer recoverInto(&out)
	hasher = nil
	if len(args) != 1 {
		return resultJSON(webverify.Result{Status: webverify.Inconclusive, Reason: "tempelHashStart takes the signature"})
	}
	d, res := webverify.NewDocumentHasher(bytesOf(args[0], webverify.MaxSignatureSize))
	if res != nil {
		return resultJSON(*res)
	}
	hasher = d
	return ""
}

// hashWrite adds one piece (a Uint8Array of at most maxPiece bytes) and
// returns the bytes hashed so far, or -1 when no hashing was started.
func hashWrite(_ js.Value, args []js.Value) (out any) {
	defer recoverInto(&out)
	if hasher == nil || len(args) != 1 {
		return -1
	}
	b := bytesOf(args[0], maxPiece)
	if len(b) > maxPiece || hasher.Size()+int64(len(b)) > webverify.MaxDocumentSize {
		hasher = nil // what the page never sends: refuse the whole document
		return -1
	}
	hasher.Write(b)
	return float64(hasher.Size())
}

// maxPiece bounds one piece of a document, the memory one call copies.
const maxPiece = 16 << 20

// verify takes one object {document: Uint8Array, or documentHashed:
// true after tempelHashStart/Write; signature: Uint8Array, pubstr:
// string, pubfile: Uint8Array|null, pubfileSource, root: string,
// constraints: [string]} and returns the Result as a JSON string.
func verify(_ js.Value, args []js.Value) (out any) {
	defer recoverInto(&out)
	if len(args) != 1 || args[0].Type() != js.TypeObject {
		return resultJSON(webverify.Result{Status: webverify.Inconclusive, Reason: "tempelVerify takes one object"})
	}
	o := args[0]
	in := webverify.Input{
		Document:      bytesOf(o.Get("document"), webverify.MaxDocumentBytes),
		Signature:     bytesOf(o.Get("signature"), webverify.MaxSignatureSize),
		Pubfile:       bytesOf(o.Get("pubfile"), webverify.MaxPubfileSize),
		PubStr:        stringOf(o.Get("pubstr")),
		PubfileSource: stringOf(o.Get("pubfileSource")),
		Root:          []byte(stringOf(o.Get("root"))),
		Now:           time.Now(),
	}
	if cs := o.Get("constraints"); cs.Type() == js.TypeObject {
		for i := 0; i < cs.Length() && i < 16; i++ {
			in.Constraints = append(in.Constraints, stringOf(cs.Index(i)))
		}
	}
	if hashed := o.Get("documentHashed"); hashed.Type() == js.TypeBoolean && hashed.Bool() {
		// Used once: a later check must hash its own document.
		if hasher != nil {
			in.Document, in.DocumentHash, in.DocumentHead = nil, hasher.Imprint(), hasher.Head()
		}
		hasher = nil
	}
	return resultJSON(webverify.Check(context.Background(), in))
}

// recoverInto turns a panic in a call from JavaScript into an
// INCONCLUSIVE answer: an unrecovered panic would end the Go program,
// and every later check on the page with it.
func recoverInto(out *any) {
	if r := recover(); r != nil {
		hasher = nil
		*out = resultJSON(webverify.Result{Status: webverify.Inconclusive, Reason: fmt.Sprintf("internal error while checking: %v", r)})
	}
}

// bytesOf copies a Uint8Array into Go memory. One byte past limit is
// copied at most, so that Check sees the input is too large without the
// page copying a huge file.
func bytesOf(v js.Value, limit int) []byte {
	if v.Type() != js.TypeObject || v.Get("length").Type() != js.TypeNumber {
		return nil
	}
	n := v.Get("length").Int()
	if n > limit+1 {
		n = limit + 1
		v = v.Call("subarray", 0, n)
	}
	b := make([]byte, n)
	js.CopyBytesToGo(b, v)
	return b
}

func stringOf(v js.Value) string {
	if v.Type() != js.TypeString {
		return ""
	}
	return v.String()
}

func resultJSON(r webverify.Result) string {
	b, err := json.Marshal(r)
	if err != nil {
		return `{"status":"INCONCLUSIVE","reason":"cannot encode the result"}`
	}
	return string(b)
}
