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
	"syscall/js"
	"time"

	"github.com/tempel-ksi/tempel/internal/webverify"
)

func main() {
	js.Global().Set("tempelVerify", js.FuncOf(verify))
	// Tell the page the function exists; then keep the Go side alive.
	if ready := js.Global().Get("tempelReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {}
}

// verify takes one object {document, signature: Uint8Array, pubstr:
// string, pubfile: Uint8Array|null, pubfileSource, root: string,
// constraints: [string]} and returns the Result as a JSON string.
func verify(_ js.Value, args []js.Value) any {
	if len(args) != 1 || args[0].Type() != js.TypeObject {
		return resultJSON(webverify.Result{Status: webverify.Inconclusive, Reason: "tempelVerify takes one object"})
	}
	o := args[0]
	in := webverify.Input{
		Document:      bytesOf(o.Get("document"), webverify.MaxDocumentSize),
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
	return resultJSON(webverify.Check(context.Background(), in))
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
