package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
)

//go:embed templates/*.html
var templates embed.FS

// pageNames are the pages, each parsed with the layout.
var pageNames = []string{"signin", "overview", "decisions", "findings", "finding", "nodes", "simulate", "error", "ssorole", "continue"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").ParseFS(templates, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// pageData is what every page's template gets.
type pageData struct {
	Nonce     string
	Title     string
	Page      string
	SignedIn  bool
	Principal string
	Kind      string
	Risk      string
	CSRF      string
	Body      any
}

// render writes a page; rq is nil on pages shown without a session.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, page string, rq *request, title string, body any) {
	d := pageData{Nonce: nonceOf(r), Title: title, Page: page, Body: body}
	if rq != nil && rq.s != nil {
		d.SignedIn, d.Principal, d.Kind, d.Risk, d.CSRF = true, rq.p.arn, rq.p.kind(), rq.risk, rq.s.csrf
	}
	var buf bytes.Buffer
	if err := h.pages[page].Execute(&buf, d); err != nil {
		h.log.Error("render page", "page", page, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorData struct{ Message string }

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, rq *request, status int, title, msg string) {
	h.render(w, r, status, "error", rq, title, errorData{Message: msg})
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func sortKV(s []kv) {
	slices.SortFunc(s, func(a, b kv) int { return strings.Compare(a.K, b.K) })
}
