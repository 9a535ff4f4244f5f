package sso_test

import (
	"net/http"
	"net/url"
)

func postForm(u string, v url.Values) (int, error) {
	resp, err := http.PostForm(u, v)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
