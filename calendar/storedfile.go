package calendar

// StoredPublicationsFile returns the signed publications file the store
// holds, what a server on it serves at start; nil when it has none.
func (s *Store) StoredPublicationsFile() ([]byte, error) {
	_, file, err := s.loadPublications()
	return file, err
}
