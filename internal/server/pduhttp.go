package server

import (
	"fmt"
	"io"
	"net/http"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ContentTypePDU is the content type of KSI PDUs over HTTP.
const ContentTypePDU = "application/ksi-response"

// ReadPDU reads a PDU request body, bounded by the largest PDU. It answers
// the HTTP error itself and returns ok=false when the body is unusable.
func ReadPDU(w http.ResponseWriter, r *http.Request, respType uint16) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "KSI PDU endpoints accept POST only", http.StatusMethodNotAllowed)
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, pdu.MaxSize+1))
	if err != nil {
		WritePDUError(w, respType, pdu.StatusInvalidRequest, "could not read the request body", http.StatusBadRequest)
		return nil, false
	}
	if len(body) > pdu.MaxSize {
		WritePDUError(w, respType, pdu.StatusInvalidRequest, fmt.Sprintf("request larger than %d bytes", pdu.MaxSize), http.StatusRequestEntityTooLarge)
		return nil, false
	}
	return body, true
}

// WritePDUError answers with a bare error PDU (no header, no HMAC): the
// reply to a request that could not be read or authenticated.
func WritePDUError(w http.ResponseWriter, respType uint16, status uint64, msg string, code int) {
	b, err := pdu.EncodeErrorPDU(respType, pdu.ErrorPayload{Status: status, Message: msg})
	if err != nil {
		http.Error(w, msg, code)
		return
	}
	WritePDU(w, b, code)
}

// WritePDU writes a response PDU.
func WritePDU(w http.ResponseWriter, b []byte, code int) {
	w.Header().Set("Content-Type", ContentTypePDU)
	w.WriteHeader(code)
	w.Write(b)
}
